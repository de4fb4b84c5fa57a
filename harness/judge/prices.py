"""Judge prices (USD per million tokens) and the checks on eval.judge that need no network.

Light on purpose (yaml only): the config is validated with ``check_judge_settings`` before
any cell runs, in a process that must not pay for importing the openai client.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import yaml

from harness.errors import ConfigError

SHIPPED_PRICES = Path(__file__).resolve().parent / "prices.yaml"
"""The shipped table (OpenAI list prices); eval.judge.prices replaces it with the user's file."""
PRICE_FIELDS = ("input_per_mtok", "output_per_mtok")

Prices = Dict[str, Tuple[float, float]]


def prices_path(path: Optional[str]) -> Path:
    """The user's price file (``~`` expanded), or the shipped one when ``path`` is None."""
    return Path(path).expanduser() if path else SHIPPED_PRICES


def _number(value: Any) -> bool:
    """A finite, non-negative price (YAML booleans are ints in Python; they are not prices)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def load_prices(path: Optional[str]) -> Prices:
    """``{model: (input USD per Mtok, output USD per Mtok)}`` from the YAML at ``path`` (None = shipped).

    Each row is ``model: {input_per_mtok: X, output_per_mtok: Y}``; anything else is a
    one-line ConfigError naming eval.judge.prices and the file.
    """
    file = prices_path(path)
    where = f"eval.judge.prices={file}"
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{where}{line}: not valid YAML ({getattr(exc, 'problem', None) or type(exc).__name__})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of model: {{input_per_mtok, output_per_mtok}}")
    prices: Prices = {}
    for model, row in data.items():
        if not isinstance(row, dict) or not all(_number(row.get(field)) for field in PRICE_FIELDS):
            raise ConfigError(f"{where}: model {model} needs both input_per_mtok and output_per_mtok "
                              "(USD per million tokens, numbers >= 0)")
        prices[str(model)] = (float(row["input_per_mtok"]), float(row["output_per_mtok"]))
    return prices


def price_for(model: str, prices: Prices) -> Optional[Tuple[float, float]]:
    """(input, output) USD per million tokens for ``model`` (exact name), or None when unpriced."""
    return prices.get(model)


def cost(model: str, prompt_tokens: int, completion_tokens: int, prices: Prices) -> float:
    """USD of one call from its token usage; 0 for an unpriced model (a local server)."""
    price = price_for(model, prices)
    if price is None:
        return 0.0
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1e6


def api_key(settings: Dict[str, Any]) -> Optional[str]:
    """The judge's API key from the environment variable eval.judge.api_key_env names (None = no key).

    A missing or empty variable is a ConfigError naming the variable, never a value.
    """
    name = settings.get("api_key_env")
    if not name:
        return None
    value = os.environ.get(name)
    if not value:
        raise ConfigError(f"eval.judge.api_key_env={name}: the environment variable {name} is not set")
    return value


def check_judge_settings(settings: Dict[str, Any]) -> None:
    """Reject an eval.judge block that cannot work, with a one-line ConfigError, before any call.

    Checks the numbers (concurrency, repeats >= 1; timeout_s, max_usd > 0; retries >= 0),
    that the API key variable is set, and that a spending cap has a price to count against.
    """
    minimums = (("concurrency", 1, "at least 1"), ("repeats", 1, "at least 1"), ("retries", 0, ">= 0"))
    for field, least, words in minimums:
        value = settings.get(field)
        if value is not None and value < least:
            raise ConfigError(f"eval.judge.{field}={value}: must be {words}")
    for field in ("timeout_s", "max_usd"):
        value = settings.get(field)
        if value is not None and not value > 0:
            raise ConfigError(f"eval.judge.{field}={value}: must be > 0")
    api_key(settings)
    max_usd = settings.get("max_usd")
    if max_usd is not None:
        model = settings.get("model") or "gpt-4"
        if price_for(model, load_prices(settings.get("prices"))) is None:
            raise ConfigError(f"eval.judge.max_usd={max_usd:g}: the judge model {model} has no price in "
                              f"{prices_path(settings.get('prices'))}; add it there (USD per million "
                              "input/output tokens) or drop max_usd")
