"""Cell ids are stable for the same config and change with every training-relevant key."""

from __future__ import annotations

import copy

import pytest

from harness.cell import cell_id
from harness.main import sweep_name

pytestmark = pytest.mark.unit

BASE = {
    "model": {"name": "tiny-llama", "arch": "llama"},
    "peft": {"method": "lora"},
    "lora": {"r": 8, "alpha": 16},
    "quant": {"mode": "none"},
    "framework": {"name": "hf", "backend": "hf"},
    "train": {"lr": 2e-4, "seed": 42, "max_steps": 30},
    "data": {"path": None},
    "eval": {"perplexity": {"batch_size": 8}},
    "run": {"timeout_s": 3600, "force": False, "cache_dir": "/a"},
}


def test_same_config_same_id():
    assert cell_id(BASE) == cell_id(copy.deepcopy(BASE))
    assert cell_id(BASE).startswith("tiny-llama-lora-r8-none-hf-")


@pytest.mark.parametrize(
    "path,value",
    [
        (("lora", "r"), 16),
        (("train", "lr"), 1e-4),
        (("train", "seed"), 1),
        (("quant", "mode"), "4bit"),
        (("data", "path"), "x.jsonl"),
        (("eval", "perplexity", "batch_size"), 4),
        (("model", "name"), "tiny-mistral"),
    ],
)
def test_training_relevant_change_gives_new_id(path, value):
    changed = copy.deepcopy(BASE)
    node = changed
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert cell_id(changed) != cell_id(BASE)


def test_run_only_keys_do_not_change_id():
    changed = copy.deepcopy(BASE)
    changed["run"] = {"timeout_s": 5, "force": True, "cache_dir": "/b"}
    assert cell_id(changed) == cell_id(BASE)


def test_sweep_name_is_order_insensitive_and_ignores_run_keys():
    a = sweep_name(None, ["model=a,b", "lora.r=8,16"])
    assert a == sweep_name(None, ["lora.r=8,16", "model=a,b", "run.force=true"])
    assert sweep_name(None, []) == "default"
    assert sweep_name("my sweep/1", ["x=1"]) == "my_sweep_1"
    long = sweep_name(None, [f"k{i}=value{i}" for i in range(30)])
    assert len(long) <= 80 and long == sweep_name(None, [f"k{i}=value{i}" for i in range(30)])
