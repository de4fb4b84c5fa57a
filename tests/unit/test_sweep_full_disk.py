"""A full disk under run.root: one line per failed write naming the file, the other cells still run and are
reported, and the command never exits 0 when an output could not be written."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from harness.files import write_json_atomic
from harness.store import layout
from harness.store.records import new_record
from harness.sweep import callbacks, job
from hydra_plugins.harness_sweeper.harness_sweeper import GuardedLauncher

pytestmark = pytest.mark.unit

FULL = "No space left on device"


@pytest.fixture(autouse=True)
def fresh_state(monkeypatch):
    monkeypatch.setattr(job, "STATE", job.SweepState())
    monkeypatch.setattr(callbacks, "STATE", job.STATE)
    yield job.STATE


class BasicLauncher:
    """A stand-in for Hydra's basic launcher: runs jobs in order; job ``fails`` fails in Hydra's own _save_config."""

    def __init__(self, fails: int) -> None:
        self.fails = fails
        self.ran: list = []

    def launch(self, job_overrides, initial_job_idx):
        out = []
        for offset in range(len(job_overrides)):
            if initial_job_idx + offset == self.fails:
                raise OSError(errno.ENOSPC, FULL)  # Hydra's YAML write names no file
            self.ran.append(initial_job_idx + offset)
            out.append(f"return {initial_job_idx + offset}")
        return out


class JoblibLauncher(BasicLauncher):
    """A batch launcher: the whole batch fails when one job does."""

    def launch(self, job_overrides, initial_job_idx):
        if len(job_overrides) > 1 and initial_job_idx <= self.fails < initial_job_idx + len(job_overrides):
            raise OSError(errno.ENOSPC, FULL)
        return super().launch(job_overrides, initial_job_idx)


@pytest.mark.parametrize("kind", [BasicLauncher, JoblibLauncher])
def test_a_job_whose_hydra_files_cannot_be_written_is_one_line_and_the_others_run(kind, fresh_state, capsys):
    inner = kind(fails=1)
    returns = GuardedLauncher(inner).launch([["a=1"], ["a=2"], ["a=3"]], initial_job_idx=0)
    assert returns == ["return 0", "return 2"] and 2 in inner.ran
    err = [line for line in capsys.readouterr().err.splitlines() if line]
    assert err[-1] == f"error: #1: cannot write the .hydra files of job #1: {FULL}; the cell did not run"
    assert len(err) == (1 if kind is BasicLauncher else 2)  # a batch launcher also says its batch failed
    assert fresh_state.exit_code() == 1


def test_guarded_launcher_passes_other_attributes_through():
    inner = BasicLauncher(fails=-1)
    inner.config = "cfg"
    assert GuardedLauncher(inner).config == "cfg"


def _sweep(tmp_path: Path, statuses: dict) -> Path:
    sweep = tmp_path / "s"
    sweep.mkdir()
    for cid, status in statuses.items():
        write_json_atomic(tmp_path / "cells" / cid / "record.json", new_record(cid, status, {}))
    layout.write_manifest(sweep, {str(i): {"cell_id": cid, "evals": {}} for i, cid in enumerate(statuses)})
    return sweep


def test_a_report_that_cannot_be_written_makes_an_ok_sweep_exit_non_zero(tmp_path, monkeypatch, fresh_state, capsys):
    from harness.report import build

    sweep = _sweep(tmp_path, {"a": "ok", "b": "ok"})

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, FULL, str(sweep / "report.html"))

    monkeypatch.setattr(build, "report", full)
    callbacks.finish(sweep, judge=False)
    out = capsys.readouterr()
    assert "2/2 cells ok" in out.out
    assert out.err.strip() == f"error: report: cannot write {sweep / 'report.html'}: {FULL}"
    assert fresh_state.exit_code() == 1


def test_a_summary_that_cannot_be_written_still_reports_every_cell(tmp_path, monkeypatch, fresh_state, capsys):
    sweep = _sweep(tmp_path, {"a": "ok", "b": "failed"})

    def full(sweep_dir):
        raise OSError(errno.ENOSPC, FULL, str(Path(sweep_dir) / "summary.csv"))

    monkeypatch.setattr(callbacks, "summarise", full)
    callbacks.finish(sweep, judge=False)
    out = capsys.readouterr()
    assert out.err.strip() == f"error: summary: cannot write {sweep / 'summary.csv'}: {FULL}"
    assert "a: ok" in out.out and "b: failed" in out.out and "1/2 cells ok (no summary file)" in out.out
    assert fresh_state.exit_code() == 1


def test_a_corrupt_manifest_at_the_end_of_a_sweep_is_one_line_and_not_ok(tmp_path, fresh_state, capsys):
    sweep = _sweep(tmp_path, {"a": "ok"})
    (sweep / "manifest.json").write_text("{}")
    callbacks.finish(sweep, judge=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: summary: {sweep / 'manifest.json'}: not a sweep manifest")
    assert fresh_state.exit_code() == 1


def test_a_failed_write_in_a_job_names_the_file(fresh_state):
    exc = OSError(errno.ENOSPC, FULL, "/r/cells/x/record.json")
    assert job.cannot_write(exc, "under run.root") == f"cannot write /r/cells/x/record.json: {FULL}"
    assert job.cannot_write(OSError(errno.ENOSPC, FULL), "under run.root") == f"cannot write under run.root: {FULL}"
