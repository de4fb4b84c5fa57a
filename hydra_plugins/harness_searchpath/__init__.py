"""Hydra plugin package: puts the repository's sweeps/ folder on Hydra's search path."""
