"""Hydra plugin package for the harness sweeper (Hydra only loads plugins from hydra_plugins)."""
