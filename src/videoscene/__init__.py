"""VideoScene: distilling a video diffusion model to generate 3D scenes in one step."""

__version__ = "0.1.0"
