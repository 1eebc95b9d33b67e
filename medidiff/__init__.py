"""medidiff: 3D diffusion models of medical volumes (train, generate, evaluate)."""

__version__ = "0.1.0"
