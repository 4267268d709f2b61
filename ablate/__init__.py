"""ablate: which training tricks really improve an image classifier."""

__version__ = "0.1.0"
