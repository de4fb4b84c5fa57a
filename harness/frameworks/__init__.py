"""Runners that train inside a framework's own environment (harness/envs.py); light modules only."""
