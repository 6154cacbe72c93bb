"""From the generated video to a 3D scene: 3D Gaussians, started from the feed-forward prior's, optimised on
the generated frames at their cameras as in 3D Gaussian Splatting (Kerbl et al. 2023), with a per-frame
confidence weight that trusts frames far from the two input views less (ReconX's confidence-aware
reconstruction). `videoscene reconstruct` (cli.py) runs it on a `videoscene generate` folder;
`optimize.fit_gaussians` is the optimisation; `densify.py` the densification and pruning. docs/reconstruct.md.
"""
