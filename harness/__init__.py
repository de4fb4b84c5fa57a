"""harness: sweep fine-tuning recipes, measure what they cost and what they buy.

The package root stays free of heavy imports (torch, transformers): the Hydra parent
imports it, and it must start in well under a second.
"""

__version__ = "0.1.0"
SCHEMA_VERSION = 1
"""Version of the record.json layout; bumped on incompatible changes."""
