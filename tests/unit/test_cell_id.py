"""Cell identity: content-addressed, stable for equal settings, new for anything that decides the weights."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest

from harness.config.compose import sweep_name
from harness.config.schema import HarnessConfig
from harness.store import identity
from harness.store.identity import canonical_training_config, cell_id, cell_identity, eval_keys, folder_fingerprint

pytestmark = pytest.mark.unit


@pytest.fixture
def base(monkeypatch):
    """The default config as the parent resolves it, on a CPU-only machine."""
    monkeypatch.setattr(identity, "_visible_gpu_name", lambda: None)
    return dataclasses.asdict(HarnessConfig())


def _id(config):
    return cell_id(config, cell_identity(config))


def _set(config, path, value):
    changed = copy.deepcopy(config)
    node = changed
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return changed


def test_same_config_same_id_and_defaults_left_out(base):
    assert _id(base) == _id(copy.deepcopy(base))
    assert _id(base).startswith("tiny-llama-lora-r16-none-hf-")
    assert canonical_training_config(base) == {}  # every key at its default: a key added later changes nothing


def test_equal_values_written_differently_are_one_cell(base):
    # train.lr=2e-4, train.lr=0.0002 and no override at all resolve to the same float
    assert _id(_set(base, ("train", "lr"), float("2e-4"))) == _id(_set(base, ("train", "lr"), 0.0002)) == _id(base)


@pytest.mark.parametrize(
    "path,value",
    [
        (("lora", "r"), 8),
        (("train", "lr"), 1e-4),
        (("train", "seed"), 1),
        (("quant", "mode"), "4bit"),
        (("model", "name"), "tiny-mistral"),
        (("model", "num_layers"), 3),
        (("data", "max_examples"), 10),
    ],
)
def test_training_relevant_change_gives_new_id(base, path, value):
    assert _id(_set(base, path, value)) != _id(base)


def test_run_and_eval_keys_do_not_change_the_cell_but_eval_keys_do_change_its_evaluation(base):
    changed = _set(_set(base, ("run", "timeout_s"), 5.0), ("run", "force"), True)
    assert _id(changed) == _id(base)
    with_ppl = _set(base, ("eval", "perplexity"), {"batch_size": 8, "rolling": True, "max_length": None})
    other = _set(with_ppl, ("eval", "perplexity", "batch_size"), 4)
    assert _id(with_ppl) == _id(other) == _id(base)
    assert eval_keys(with_ppl)["perplexity"] != eval_keys(other)["perplexity"]


def test_data_content_decides_not_the_path(base, tmp_path):
    rows = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]} for i in range(3)]
    first = tmp_path / "a.jsonl"
    first.write_text("".join(json.dumps(r) + "\n" for r in rows))
    copy_dir = tmp_path / "copy"
    copy_dir.mkdir()
    same = copy_dir / "a.jsonl"
    same.write_bytes(first.read_bytes())
    at_first = _id(_set(base, ("data", "path"), str(first)))
    assert at_first == _id(_set(base, ("data", "path"), str(same)))  # a copy of the same bytes is the same cell
    first.write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))  # the user cuts the file
    assert _id(_set(base, ("data", "path"), str(first))) != at_first


def test_device_class_and_library_versions_are_part_of_the_id(base, monkeypatch):
    on_cpu = _id(base)
    monkeypatch.setattr(identity, "_visible_gpu_name", lambda: "NVIDIA H200")
    assert cell_identity(base)["device"] == "cuda:NVIDIA H200"
    assert _id(base) != on_cpu
    assert cell_identity(_set(base, ("run", "device"), "cpu"))["device"] == "cpu"
    monkeypatch.setattr(identity, "_visible_gpu_name", lambda: None)
    monkeypatch.setattr(identity, "_this_environment", lambda: identity.environment_digest("3.11.0", {"torch": "9.9"}))
    assert _id(base) != on_cpu


def test_local_model_folder_fingerprint_reads_safetensors_headers(tmp_path: Path):
    header = json.dumps({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}).encode()
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 16)
    (tmp_path / "config.json").write_text("{}")
    before = folder_fingerprint(tmp_path)
    other = header.replace(b"[2, 2]", b"[4, 1]")
    weights.write_bytes(len(other).to_bytes(8, "little") + other + b"\0" * 16)
    assert folder_fingerprint(tmp_path) != before


def test_sweep_name_is_order_insensitive_and_ignores_run_keys():
    a = sweep_name(None, ["model=a,b", "lora.r=8,16"])
    assert a == sweep_name(None, ["lora.r=8,16", "model=a,b", "run.force=true"])
    assert sweep_name(None, []) == "default"
    long = sweep_name(None, [f"k{i}=value{i}" for i in range(30)])
    assert len(long) <= 80 and long == sweep_name(None, [f"k{i}=value{i}" for i in range(30)])


def test_a_hub_branch_is_resolved_to_its_commit_from_the_local_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    identity.resolve_revision.cache_clear()
    refs = tmp_path / "models--org--model" / "refs"
    refs.mkdir(parents=True)
    (refs / "main").write_text("a" * 40)
    model = {"tiny": False, "hub_id": "org/model", "revision": "main"}
    assert identity.model_fingerprint(model) == "hub:org/model@" + "a" * 40
    (refs / "main").write_text("b" * 40)  # the branch moved: another cell
    identity.resolve_revision.cache_clear()
    assert identity.model_fingerprint(model) == "hub:org/model@" + "b" * 40
    identity.resolve_revision.cache_clear()


@pytest.mark.parametrize("backend,label", [
    ("tests.fault_backend:FaultBackend", "fault"), ("my_pkg.trainers:Backend", "trainers"), ("litgpt", "litgpt"),
])
def test_a_plug_in_backend_names_itself_in_the_cell_id(base, backend, label):
    """framework.backend=pkg:Class alone leaves framework.name at hf; the id must not claim hf trained it."""
    plugged = _set(base, ("framework", "backend"), backend)
    assert _id(plugged).startswith(f"tiny-llama-lora-r16-none-{label}-")
    assert _id(plugged).rsplit("-", 1)[1] != _id(base).rsplit("-", 1)[1]  # the hash saw the backend before too
    named = _set(plugged, ("framework", "name"), "mine")
    assert _id(named).startswith("tiny-llama-lora-r16-none-mine-")  # an explicit framework.name wins


def test_an_hf_cell_id_is_unchanged_by_the_plug_in_label(base):
    """Cell ids are content addresses: the hf prefix and hash stay what they were, or stored cells are orphaned."""
    from harness.files import stable_digest

    assert _id(base) == f"tiny-llama-lora-r16-none-hf-{stable_digest(cell_identity(base), 12)}"
    unsloth = _set(_set(base, ("framework", "name"), "unsloth"), ("framework", "backend"), "unsloth")
    assert "-none-unsloth-" in _id(unsloth)
