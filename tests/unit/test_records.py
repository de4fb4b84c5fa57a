"""Records round-trip and are written atomically."""

from __future__ import annotations

import json
import os

import pytest

from harness import files
from harness.files import read_json, write_json_atomic
from harness.store.records import load_records, metric_row, new_record

pytestmark = pytest.mark.unit


def test_round_trip(tmp_path):
    record = new_record("cell-1", "ok", {"model": {"name": "m"}})
    record["metrics"].append(metric_row("perplexity", "heldout", "eval_loss", 1.5, n=10, higher_is_better=False))
    cell = tmp_path / "cell-1"
    write_json_atomic(cell / "cell.json", {"cell_id": "cell-1", "config": {}})
    write_json_atomic(cell / "record.json", record)
    assert read_json(cell / "record.json") == record
    assert load_records(tmp_path) == [record]


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "record.json"
    write_json_atomic(target, {"status": "ok"})

    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "fsync", boom)
    with pytest.raises(OSError):
        write_json_atomic(target, {"status": "failed"})
    assert json.loads(target.read_text()) == {"status": "ok"}
    assert os.listdir(tmp_path) == ["record.json"]


def test_truncated_record_reads_as_missing(tmp_path):
    (tmp_path / "record.json").write_text('{"status": "ok", "cell')
    assert read_json(tmp_path / "record.json") is None


def test_unknown_status_rejected():
    with pytest.raises(AssertionError):
        new_record("c", "done", {})
