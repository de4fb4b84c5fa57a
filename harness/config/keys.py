"""The schema's keys: which exist, their types, and one line for a key that does not.

Hydra lets ``+train.lrr=0.1`` append a key even to a structured config, and reports a
mistyped key in many lines; these helpers name the key and the likely intended one.
Parent-safe (no torch).
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Any, Dict, Mapping, Optional

from harness.config.names import closest
from harness.config.schema import HarnessConfig
from harness.errors import ConfigError


@functools.lru_cache(maxsize=None)
def schema_fields(schema: type) -> Dict[str, Any]:
    """Field name -> resolved type of a config dataclass (annotations are strings here)."""
    return typing.get_type_hints(schema)


def dataclass_of(annotation: Any) -> Optional[type]:
    """The config dataclass an annotation holds (unwrapping Optional), or None for a leaf or a free dict."""
    if dataclasses.is_dataclass(annotation):
        return annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Union and len(args) == 1 and dataclasses.is_dataclass(args[0]):
        return args[0]
    return None


def schema_at(key: str) -> Optional[type]:
    """The config dataclass at a dotted key ("" = HarnessConfig), or None when the key holds no block."""
    schema: Optional[type] = HarnessConfig
    for part in filter(None, key.split(".")):
        if schema is None or part not in schema_fields(schema):
            return None
        schema = dataclass_of(schema_fields(schema)[part])
    return schema


def unknown_key_message(key: str, value: Any) -> str:
    """One line for a key the schema does not have, with a did-you-mean among its siblings."""
    parent, _, name = key.rpartition(".")
    schema = schema_at(parent)
    siblings = list(schema_fields(schema)) if schema is not None else []
    close = closest(name, siblings)
    if close:
        return f"{key}={value}: unknown key (did you mean {'.'.join(filter(None, [parent, close]))}?)"
    where = f"{parent} has" if parent else "top-level keys are"
    return f"{key}={value}: unknown key; {where} {', '.join(siblings)}" if siblings else f"{key}={value}: unknown key"


def check_known_keys(tree: Mapping[str, Any], schema: type = HarnessConfig, prefix: str = "") -> None:
    """Raise a one-line ConfigError for the first key of a composed config the schema lacks.

    Hydra lets ``+train.lrr=0.1`` append a key even to a structured config; nothing reads it,
    so a typo would silently train with the default. Free dicts (``framework.options``) are
    not checked below their own key.
    """
    fields = schema_fields(schema)
    for name, value in tree.items():
        key = f"{prefix}{name}"
        if name not in fields:
            raise ConfigError(unknown_key_message(key, value))
        inner = dataclass_of(fields[name])
        if inner is not None and isinstance(value, Mapping):
            check_known_keys(value, inner, f"{key}.")
