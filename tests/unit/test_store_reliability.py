"""Store files that are truncated, emptied or cannot be written: one line naming the file, never a traceback or a lie."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest

from harness import errors, files
from harness.files import write_json_atomic
from harness.report.summary import summarise
from harness.store import layout
from harness.store.records import new_record

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def _config(r: int) -> dict:
    return {"peft": {"method": "lora"}, "lora": {"r": r}}


def _sweep(tmp_path: Path, cells: dict) -> Path:
    """A sweep folder over ``cells`` (id -> record or None); each job's planned config sets lora.r to its number."""
    sweep = tmp_path / "s"
    sweep.mkdir()
    for cid, record in cells.items():
        if record is not None:
            write_json_atomic(tmp_path / "cells" / cid / "record.json", record)
    jobs = {str(i): {"cell_id": cid, "evals": {}, "config": _config(4 * (i + 1))} for i, cid in enumerate(cells)}
    layout.write_manifest(sweep, jobs)
    return sweep


def test_a_truncated_record_is_corrupt_and_named_never_not_run(tmp_path):
    sweep = _sweep(tmp_path, {"a": new_record("a", "ok", {"lora": {"r": 4}}), "b": new_record("b", "failed", {})})
    path = tmp_path / "cells" / "b" / "record.json"
    path.write_text(path.read_text()[:40])  # cut mid-object, as a full disk or a kill leaves it
    views = {v["cell_id"]: v for v in layout.load_sweep(sweep)}
    assert views["a"]["status"] == "ok"
    assert views["b"]["status"] == "corrupt"
    assert views["b"]["error"].startswith("cells/b/record.json: not valid JSON (truncated?); ")
    assert "delete the cell folder" in views["b"]["error"]
    assert views["b"]["config"] == _config(8)  # its axis values from the planned config


def test_a_record_that_is_not_an_object_is_corrupt(tmp_path):
    sweep = _sweep(tmp_path, {"a": None})
    write_json_atomic(tmp_path / "cells" / "a" / "x.json", {})
    (tmp_path / "cells" / "a" / "record.json").write_text("[1, 2]\n")
    view = layout.load_sweep(sweep)[0]
    assert view["status"] == "corrupt" and "holds a list, not a JSON object" in view["error"]


def test_a_corrupt_evaluation_result_makes_the_cell_corrupt(tmp_path):
    sweep = tmp_path / "s"
    sweep.mkdir()
    write_json_atomic(tmp_path / "cells" / "a" / "record.json", new_record("a", "ok", {}))
    layout.write_manifest(sweep, {"0": {"cell_id": "a", "evals": {"perplexity": "perplexity-k"}}})
    result = layout.eval_dir(tmp_path / "cells" / "a", "perplexity-k") / layout.RESULT
    result.parent.mkdir(parents=True)
    result.write_text('{"status": "o')
    view = layout.load_sweep(sweep)[0]
    assert view["status"] == "corrupt"
    assert "cells/a/evals/perplexity-k/result.json: not valid JSON" in view["error"]


@pytest.mark.parametrize("text, says", [("{}", "no 'jobs'"), ('{"jobs": {"0": {}}}', "no 'jobs'"), ('{"jo', "not valid JSON")])
def test_a_corrupt_manifest_is_one_line_naming_it(tmp_path, text, says):
    sweep = _sweep(tmp_path, {"a": new_record("a", "ok", {})})
    (sweep / "manifest.json").write_text(text)
    with pytest.raises(errors.CorruptFileError) as caught:
        layout.load_sweep(sweep)
    message = str(caught.value)
    assert str(sweep / "manifest.json") in message and says in message and "rerun the sweep's command" in message
    assert "\n" not in message


def test_update_manifest_rewrites_a_corrupt_manifest(tmp_path):
    sweep = _sweep(tmp_path, {"a": None})
    (sweep / "manifest.json").write_text("{}")
    layout.update_manifest(sweep, "0", {"cell_id": "a", "evals": {}})
    assert layout.read_manifest(sweep)["jobs"]["0"]["cell_id"] == "a"


def test_a_missing_manifest_is_still_none(tmp_path):
    assert layout.read_manifest(tmp_path) is None


def test_a_failed_atomic_write_names_the_file_and_leaves_no_temp(tmp_path, monkeypatch):
    real = files.os.replace

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")  # a full disk: no file name in the error

    monkeypatch.setattr(files.os, "replace", full)
    target = tmp_path / "record.json"
    with pytest.raises(OSError) as caught:
        files.write_json_atomic(target, {"a": 1})
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(files.os, "replace", real)
    with pytest.raises(FileNotFoundError) as missing:  # the errno keeps its subclass
        files.write_json_atomic(Path("/proc/self/nonexistent-dir/x.json"), {})
    assert missing.value.filename == "/proc/self/nonexistent-dir/x.json"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.report", *args], capture_output=True, text=True, cwd=REPO, timeout=120)


def test_report_help_prints_usage():
    done = _cli("--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m harness.report SWEEP_DIR") and done.stderr == ""


def test_report_of_a_corrupt_manifest_is_one_line_and_exits_2(tmp_path):
    sweep = _sweep(tmp_path, {"a": new_record("a", "ok", {})})
    (sweep / "manifest.json").write_text("{}")
    done = _cli(str(sweep))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: {sweep / 'manifest.json'}: not a sweep manifest (no 'jobs' of numbered cells); rerun the sweep's command to write it again"]


def test_report_main_on_a_full_disk_is_one_line_and_exits_1(tmp_path, monkeypatch, capsys):
    from harness.report import __main__ as cli
    from harness.report import build

    sweep = _sweep(tmp_path, {"a": new_record("a", "ok", {})})

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(sweep / "report.html"))

    monkeypatch.setattr(build, "report", full)
    assert cli.main(["harness.report", str(sweep)]) == 1
    assert capsys.readouterr().err.strip() == f"error: cannot write {sweep / 'report.html'}: No space left on device"


def test_summary_marks_a_corrupt_cell_and_fills_axes(tmp_path):
    sweep = _sweep(tmp_path, {"a": new_record("a", "ok", _config(4)), "b": None})
    (tmp_path / "cells" / "b").mkdir(parents=True, exist_ok=True)
    (tmp_path / "cells" / "b" / "record.json").write_text('{"cell_id": "b", "sta')
    rows = {row["cell"]: row for row in summarise(sweep).rows}
    assert rows["b"]["status"] == "corrupt"
    assert rows["b"]["lora_r"] == 8 and rows["a"]["lora_r"] == 4


def test_report_of_a_truncated_record_marks_it_corrupt_and_exits_1(tmp_path):
    sweep = _sweep(tmp_path, {"a": new_record("a", "ok", _config(4)), "b": new_record("b", "failed", _config(8))})
    path = tmp_path / "cells" / "b" / "record.json"
    path.write_text(path.read_text()[:40])
    done = _cli(str(sweep))
    assert done.returncode == 1, done.stdout + done.stderr
    errors_said = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors_said == ["error: cells/b/record.json: not valid JSON (truncated?); "
                           "rerun the sweep to train the cell again, or delete the cell folder"]
    assert "corrupt" in (sweep / "report.md").read_text()
