"""harness: sweep fine-tuning recipes, measure what they cost and what they buy.

The package root stays free of heavy imports (torch, transformers): the Hydra parent
imports it, and it must start in well under a second.
"""

__version__ = "0.1.0"
SCHEMA_VERSION = 1
"""Version of the record.json layout; bumped on incompatible changes."""


def require_installed() -> None:
    """Exit in one line, saying what to do, when the Python running the harness lacks its dependencies.

    The usual cause is a Python outside the ``.venv`` that ``make setup`` creates, which would
    otherwise stop with ``No module named 'hydra'`` and a traceback.
    """
    import importlib.util
    import sys

    missing = [name for name in ("hydra", "omegaconf", "yaml") if importlib.util.find_spec(name) is None]
    if missing:
        sys.exit(
            f"error: {sys.executable} has no {', '.join(missing)}: this Python is not the project's .venv; "
            "run `make setup` once, then `source .venv/bin/activate` (or call .venv/bin/harness directly)"
        )
