"""The cell store without workers: paths stay inside, locks exclude, views cover the grid, old folders migrate."""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from pathlib import Path

import pytest

from harness import errors, files
from harness.config.schema import HarnessConfig
from harness.files import read_json, write_json_atomic
from harness.store import identity, layout
from harness.store.environment import library_versions
from harness.store.migrate import migrate
from harness.store.records import new_record

pytestmark = pytest.mark.unit


def test_paths_that_escape_the_store_are_refused(tmp_path):
    with pytest.raises(errors.StoreError, match="outside"):
        layout.cell_path(tmp_path, "../../evil")
    with pytest.raises(errors.StoreError):
        files.within(tmp_path / "cells" / ".." / "..", tmp_path)
    assert layout.cell_path(tmp_path, "tiny-llama-lora-r8-none-hf-abc") == tmp_path / "cells" / "tiny-llama-lora-r8-none-hf-abc"


def test_a_busy_cell_is_skipped_or_waited_for_and_names_its_holder(tmp_path):
    said = []
    with layout.cell_lock(tmp_path / "c", "wait", said.append) as fd:
        assert fd is not None
        # flock is per open file description: a second open in this process contends like another process would
        with layout.cell_lock(tmp_path / "c", "skip", said.append) as other:
            assert other is None
    assert len(said) == 1 and f"pid {os.getpid()}" in said[0] and "skipped" in said[0]
    with layout.cell_lock(tmp_path / "c", "skip", said.append) as again:  # released: free again
        assert again is not None


def test_view_covers_exactly_the_manifest_and_ok_needs_every_evaluation(tmp_path):
    sweep = tmp_path / "s"
    sweep.mkdir()
    for cid in ("a", "b", "stale"):
        write_json_atomic(tmp_path / "cells" / cid / "record.json", new_record(cid, "ok", {}))
    layout.write_manifest(sweep, {"0": {"cell_id": "stale", "evals": {}}})
    layout.write_manifest(sweep, {"0": {"cell_id": "a", "evals": {}}, "1": {"cell_id": "b", "evals": {"perplexity": "perplexity-k"}}})
    assert sorted(p.name for p in sweep.iterdir() if p.is_symlink()) == ["a", "b"]  # the stale link is gone, its cell stays
    assert (tmp_path / "cells" / "stale" / "record.json").exists()
    views = {v["cell_id"]: v for v in layout.load_sweep(sweep)}
    assert views["a"]["status"] == "ok"
    assert views["b"]["status"] == "skipped" and "perplexity not run" in views["b"]["error"]
    layout.write_eval(tmp_path / "cells" / "b", "perplexity-k", {"status": "ok", "rows": [{"evaluator": "perplexity", "metric": "eval_loss", "value": 1.0}]})
    assert {v["cell_id"]: v for v in layout.load_sweep(sweep)}["b"]["metrics"][0]["value"] == 1.0


def _old_layout(root: Path, data: Path) -> Path:
    config = dataclasses.asdict(HarnessConfig())
    config["data"]["path"] = str(data)
    config["eval"]["perplexity"] = {"batch_size": 8, "rolling": True, "max_length": None}
    folder = root / "old-sweep" / "tiny-llama-lora-r16-none-hf-0123456789"
    (folder / "adapter").mkdir(parents=True)
    write_json_atomic(folder / "cell.json", {"cell_id": folder.name, "config": config})
    rows = [{"evaluator": "perplexity", "task": "heldout", "metric": "eval_loss", "value": 2.5}]
    environment = {"device": "cpu", "python": platform.python_version(), "libraries": library_versions()}
    write_json_atomic(folder / "record.json", new_record(folder.name, "ok", config, metrics=rows, environment=environment,
                                                         artifacts={"adapter": str(folder / "adapter")}))
    return folder


def test_migrate_moves_old_cells_into_the_store_under_the_id_a_new_run_computes(tmp_path, monkeypatch):
    monkeypatch.setattr(identity, "_visible_gpu_name", lambda: None)
    data = tmp_path / "chat.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}]}\n')
    os.utime(data, (time.time() - 60, time.time() - 60))
    old = _old_layout(tmp_path / "runs", data)
    assert layout.old_layout_cells(old.parent) == [old]

    assert migrate(tmp_path / "runs") == 1
    assert not old.exists()
    (link,) = [p for p in old.parent.iterdir() if p.is_symlink()]
    config = read_json(link / "record.json")["config"]
    expected = identity.cell_id(config, identity.cell_identity(config))
    assert link.name == expected and os.readlink(link) == f"../cells/{expected}"
    (view,) = layout.load_sweep(old.parent)
    assert view["cell_id"] == expected and view["status"] == "ok"
    assert [r["value"] for r in view["metrics"]] == [2.5]  # the metric rows became a perplexity result
    assert layout.weights_path(tmp_path / "runs" / "cells" / expected, view) is not None


def test_migrate_never_vouches_for_data_edited_after_the_record(tmp_path, monkeypatch):
    monkeypatch.setattr(identity, "_visible_gpu_name", lambda: None)
    data = tmp_path / "chat.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}]}\n')
    old = _old_layout(tmp_path / "runs", data)
    later = time.time() + 60
    os.utime(data, (later, later))
    assert migrate(tmp_path / "runs") == 1
    (view,) = layout.load_sweep(old.parent)
    assert view["identity"]["data"].startswith("unverified")
    config = view["config"]
    assert view["cell_id"] != identity.cell_id(config, identity.cell_identity(config))
