"""Image quality against ground truth: PSNR and SSIM, for images in [0, 1] shaped [..., 3, H, W].

The implementations are the ones the prior trains with (`videoscene.prior.losses`), so a validation score
during training and an evaluation score here are the same number:

- PSNR = −10 log10(MSE) in dB with data range 1; the generated image is clamped to [0, 1] first (as a saved
  frame would be) and the MSE is floored at 1e-10, so identical images score 100 dB, not inf (means over
  scenes stay finite).
- SSIM (Wang et al. 2004): 11-tap Gaussian window, σ = 1.5, C1 = 0.01², C2 = 0.03², averaged over channels
  and the pixels where the window fits. It equals scikit-image's `structural_similarity(gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False, data_range=1)`; pixelSplat/MVSplat call scikit-image with the
  default `use_sample_covariance=True`, which scales the variances by 121/120 and moves SSIM by < 0.005.
"""

from videoscene.prior.losses import psnr, ssim

__all__ = ["psnr", "ssim"]
