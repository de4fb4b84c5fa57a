"""The frameworks room: runners that train inside a framework's own environment (``harness.store.venvs``).

A framework with its own training loop (LitGPT) gets a thin runner here, started by its backend with that
environment's Python: it reads a framework-neutral spec and the tokenized rows the worker wrote, trains with
the framework's own code, measures with ``harness.measure`` and writes weights plus train stats back. Light
harness modules only: that environment holds the framework's dependencies, not the harness's (no hydra, no omegaconf).
"""
