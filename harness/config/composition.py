"""One line for what Hydra cannot compose (an unknown group option, key, type or override).

Hydra reports these as 7-20 lines of its own text; ``composition_problem`` turns each into
``<key>=<value>: <reason>``, the same shape as the schema's own checks.
"""

from __future__ import annotations

import re
import typing
from typing import Any, Dict, List, Optional

from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from harness.config.keys import schema_at, schema_fields, unknown_key_message
from harness.config.names import did_you_mean

# What composing a config can raise. AssertionError and ValueError included: setting a key
# inside a block that is null (eval.lm_eval when lm_eval is off) fails with a bare assert.
COMPOSITION_ERRORS = (HydraException, OmegaConfBaseException, AssertionError, ValueError)
APPEND_EXISTING = re.compile(r"Could not append to config\. An item is already at '([^']+)'")
TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def overrides_by_key(overrides: List[str]) -> Dict[str, tuple]:
    """key -> (value text, the override as typed)."""
    found: Dict[str, tuple] = {}
    for line in overrides:
        key, sep, value = str(line).partition("=")
        found[key.lstrip("+~").split("@", 1)[0]] = (value if sep else "", str(line))
    return found


def composition_problem(exc: BaseException, overrides: List[str], loader: Any = None, config_name: Optional[str] = None) -> str:
    """One line for an error Hydra or OmegaConf raised while composing, naming the key and value.

    ``loader`` (Hydra's config loader) lists a group's options when the error does not;
    ``config_name`` tells an unknown primary config (``-cn``) from a broken defaults list.
    """
    typed = overrides_by_key(overrides)
    values = {key: value for key, (value, _) in typed.items()}
    if isinstance(exc, OverrideParseException):
        return f"{exc.override}: cannot parse this override; write key=value"
    if isinstance(exc, MissingConfigException):
        return _missing_config(exc, values, loader, config_name)
    cause = exc.__cause__ if isinstance(exc.__cause__, OmegaConfBaseException) else exc
    if isinstance(cause, OmegaConfBaseException) and cause.full_key:
        key = str(cause.full_key)
        value = values.get(key, cause.value if cause.value is not None else "")
        if isinstance(cause, (ConfigAttributeError, ConfigKeyError)):
            return unknown_key_message(key, value)
        if isinstance(cause, ValidationError):
            return f"{key}={value}: must be {_expected(key) or 'a ' + first_line(cause.msg)}"
        return f"{typed.get(key, (None, key))[1]}: {first_line(cause.msg or str(cause))}"
    appended = APPEND_EXISTING.match(first_line(str(exc)))
    if appended:  # Hydra's own check, with no OmegaConf cause to read the key from
        key = appended.group(1)
        return f"{typed.get(key, (None, '+' + key))[1]}: {key} already exists; set it without the + ({key}={values.get(key, '...')})"
    null_parent = _override_under_null_block(values)
    if null_parent is not None:
        return null_parent
    shown = " ".join(overrides) or "(no overrides)"
    return f"{shown}: cannot compose the config ({first_line(str(exc)) or type(exc).__name__})"


def first_line(text: Any) -> str:
    """The first non-blank line of ``text``, stripped ("" when none)."""
    lines = [line.strip() for line in str(text or "").splitlines() if line.strip()]
    return lines[0] if lines else ""


def _missing_config(exc: MissingConfigException, values: Dict[str, str], loader: Any, config_name: Optional[str]) -> str:
    """An unknown option of a config group (``quant=3bit``), or an unknown primary config (``-cn``)."""
    missing = str(exc.missing_cfg_file or "")
    group, _, option = missing.rpartition("/")
    if not group and config_name is not None and option != config_name:  # a config's defaults list is broken
        return f"{config_name}: its defaults list names {missing}, which does not exist ({first_line(exc)})"
    options = sorted(exc.options or (_group_options(loader, group) if loader is not None else []))
    hint = did_you_mean(option, options)
    if not group:  # the primary config: list the files, not the schemas in Hydra's ConfigStore
        options = [name for name in options if not name.startswith("_") and not name.endswith("_schema")]
        hint = did_you_mean(option, options)
        choices = f"; known: {', '.join(options)}" if options else ""
        return f"--config-name={option}: no such config{hint}{choices}"
    key = group.replace("/", ".")
    shown = values.get(group, values.get(key, option))
    named = "" if shown == option else f" {option}"
    choices = f"; choose one of {', '.join(options)}" if options else ""
    return f"{key}={shown}: unknown option{named}{choices}{hint}"


def _group_options(loader: Any, group: str) -> List[str]:
    try:
        return list(loader.get_group_options(group))
    except COMPOSITION_ERRORS:
        return []


def _expected(key: str) -> Optional[str]:
    """What a key's value must be, in words, from the schema (None when the key is not in it)."""
    parent, _, name = key.rpartition(".")
    schema = schema_at(parent)
    if schema is None or name not in schema_fields(schema):
        return None
    annotation = schema_fields(schema)[name]
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    nullable = typing.get_origin(annotation) is typing.Union and len(args) == 1
    inner = args[0] if nullable else annotation
    if typing.get_origin(inner) in (list, List):
        words = "a list ([a,b])"
    elif typing.get_origin(inner) in (dict, Dict):
        words = "a mapping ({k:v})"
    else:
        words = TYPE_WORDS.get(inner)
    if words is None:
        return None
    return f"{words} or null" if nullable else words


def _override_under_null_block(values: Dict[str, str]) -> Optional[str]:
    """The message for a key set inside a block that is null here (``eval.lm_eval.*`` with lm_eval off)."""
    for key, value in values.items():
        parts = key.split(".")
        for depth in range(1, len(parts)):
            block = ".".join(parts[:depth])
            parent, _, name = block.rpartition(".")
            schema = schema_at(parent)
            if schema is None or name not in schema_fields(schema):
                break
            annotation = schema_fields(schema)[name]
            if type(None) in typing.get_args(annotation):
                return (
                    f"{key}={value}: {block} is off (null) in this config, so it has no keys to set; "
                    f"turn it on first (eval=[...] picks the evaluators)"
                )
    return None
