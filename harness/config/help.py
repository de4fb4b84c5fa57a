"""The ``== Config ==`` section of ``python -m harness --help``: every key, its value and its docstring.

Hydra's own ``$CONFIG`` prints the composed YAML without a word on what a key does; the house rule puts a
docstring under every config field, so this reads them from the schema's source (``ast``: a field's
docstring is a bare string after it, which Python does not keep at run time) and prints the first sentence
beside each key. Parent-safe (no torch).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import re
import textwrap
from typing import Any, Dict, List, Mapping, Optional

from harness.config.keys import dataclass_of, schema_fields
from harness.config.schema import HarnessConfig

LINE_MAX = 120
"""Widest help line: a docstring longer than what is left of it after the key and value ends in "..."."""
DOC_MIN = 40
"""Docstring characters shown however long the key and value are."""
VALUE_COLUMN = 34
"""Column the ``# docstring`` comments start at, so a block's comments line up."""


@functools.lru_cache(maxsize=None)
def field_docs(schema: type) -> Dict[str, str]:
    """Field name -> its docstring (the string literal right after the field) for a dataclass and its bases."""
    docs: Dict[str, str] = {}
    for cls in reversed([c for c in schema.__mro__ if dataclasses.is_dataclass(c)]):
        try:
            body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
        except (OSError, TypeError, IndexError, AttributeError):  # no source (a compiled or generated class)
            continue
        for node, after in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
                    and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
                docs[node.target.id] = after.value.value
    return docs


def one_line(doc: str, limit: int = LINE_MAX - VALUE_COLUMN - 4) -> str:
    """The first sentence of a docstring's first paragraph, on one line, at most ``limit`` characters.

    RST's double backticks become single ones: the help is read in a terminal.
    """
    paragraph = " ".join(inspect.cleandoc(doc).split("\n\n", 1)[0].split()).replace("``", "`")
    sentence = re.split(r"(?<=\.)\s+(?=[A-Z(`])", paragraph, maxsplit=1)[0]
    if len(sentence) <= limit:
        return sentence
    return sentence[: limit - 3].rsplit(" ", 1)[0] + "..."


def _value(value: Any) -> str:
    """A leaf value as YAML writes it in flow style (null, true, [a, b], {})."""
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...").strip()


def _lines(tree: Mapping[str, Any], schema: Optional[type], indent: str) -> List[str]:
    """``key: value  # doc`` for each key of a block, recursing into the blocks the schema has."""
    fields = schema_fields(schema) if schema is not None else {}
    docs = field_docs(schema) if schema is not None else {}
    out: List[str] = []
    for name, value in tree.items():
        inner = dataclass_of(fields[name]) if name in fields else None
        block = inner is not None and isinstance(value, Mapping)
        text = f"{indent}{name}:" if block else f"{indent}{name}: {_value(value)}"
        room = max(DOC_MIN, LINE_MAX - max(len(text), VALUE_COLUMN) - 4)
        out.append(f"{text:<{VALUE_COLUMN}}  # {one_line(docs[name], room)}" if name in docs else text)
        if block:
            out.extend(_lines(value, inner, indent + "  "))
    return out


def config_keys_help(tree: Mapping[str, Any]) -> str:
    """The composed config (without its ``hydra`` node) as YAML, each key followed by its docstring's first sentence."""
    return "\n".join(_lines({k: v for k, v in tree.items() if k != "hydra"}, HarnessConfig, ""))


def config_keys_resolver(*, _root_: Any) -> str:
    """OmegaConf resolver ``${harness_config_keys:}`` for the help template: the keys of the config being composed."""
    from omegaconf import OmegaConf

    text = config_keys_help(OmegaConf.to_container(_root_, resolve=False))  # ${oc.env:...} stays as written
    return text.replace("$", "$$")  # Hydra runs the help through string.Template, where $$ is a literal $
