"""``python -m harness --help`` shows every config key with its value and its docstring's first sentence."""

from __future__ import annotations

import dataclasses
import re

import pytest
from omegaconf import OmegaConf

from harness.config.help import LINE_MAX, VALUE_COLUMN, config_keys_help, config_keys_resolver, field_docs, one_line
from harness.config.keys import dataclass_of, schema_fields
from harness.config.schema import HarnessConfig
from harness.config.train import TrainConfig

pytestmark = pytest.mark.unit


def _schemas(schema=HarnessConfig, seen=None):
    seen = set() if seen is None else seen
    if schema not in seen:
        seen.add(schema)
        for annotation in schema_fields(schema).values():
            inner = dataclass_of(annotation)
            if inner is not None:
                _schemas(inner, seen)
    return seen


@pytest.fixture(scope="module")
def default_help():
    return config_keys_help(OmegaConf.to_container(OmegaConf.structured(HarnessConfig), resolve=False))


def test_every_config_field_has_a_docstring():
    """The house rule the help relies on: a docstring under every field of every block."""
    missing = [f"{schema.__name__}.{name}" for schema in _schemas() if schema is not HarnessConfig
               for name in schema_fields(schema) if name not in field_docs(schema)]
    assert not missing


def test_field_docs_are_the_strings_under_the_fields():
    docs = field_docs(TrainConfig)
    assert set(docs) == {f.name for f in dataclasses.fields(TrainConfig)}
    assert docs["lr"] == "Peak learning rate."
    assert docs["optimizer"].startswith("transformers optimizer name")


def test_each_key_shows_its_value_and_its_first_sentence(default_help):
    lines = default_help.splitlines()
    assert "train:" in lines and "  lr: 0.0002" in [line.split("  #")[0].rstrip() for line in lines]
    assert re.search(r"^  lr: 0\.0002 +# Peak learning rate\.$", default_help, re.MULTILINE)
    assert re.search(r"^    near_dedup_threshold: 0\.92 +# Cosine similarity above which", default_help, re.MULTILINE)
    # interpolations as written, not resolved into this machine's paths
    assert re.search(r"^  cache_dir: \$\{oc\.env:HARNESS_CACHE,'~/\.cache/harness'\} +# Where", default_help, re.MULTILINE)
    leaves = [line for line in lines if not line.rstrip().endswith(":") and ": " in line]
    assert leaves and all("  # " in line for line in leaves)  # every key with a value has its docstring
    assert all(len(line) <= LINE_MAX for line in lines if len(line.split("  # ")[0]) <= LINE_MAX - 44)


def test_one_line_keeps_the_first_sentence_and_cuts_long_ones():
    assert one_line("Peak learning rate.") == "Peak learning rate."
    assert one_line("Optimizer steps; 0 trains for ``epochs``. More here.\n\nSecond paragraph.") == \
        "Optimizer steps; 0 trains for `epochs`."
    assert one_line("word " * 60).endswith("...") and len(one_line("word " * 60)) <= LINE_MAX - VALUE_COLUMN - 4
    assert one_line("Wraps\n    over two lines.") == "Wraps over two lines."


def test_the_resolver_reads_the_config_being_composed_and_escapes_dollars():
    root = OmegaConf.structured(HarnessConfig)
    root.train.lr = 0.001
    text = config_keys_resolver(_root_=root)
    assert re.search(r"^  lr: 0\.001 +# Peak learning rate\.$", text, re.MULTILINE)
    assert "$${oc.env:HARNESS_CACHE" in text and "$${" in text  # Hydra's string.Template turns $$ back into $
