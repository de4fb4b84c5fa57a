"""The progress line: counts, ETA and the running cell from fabricated sweep folders; throttles on an injected clock."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, Optional

import pytest

from harness.files import read_json, write_json_atomic
from harness.store import layout as store
from harness.store import progress
from harness.store.progress import DONE, PROGRESS_NAME, ProgressWriter, finish, sweep_progress
from harness.sweep import cell, status
from harness.sweep.status import StatusLine, format_progress

pytestmark = pytest.mark.unit

T0 = 1_800_000_000.0
"""When the fabricated sweep run started (the manifest's ``started``)."""
HASH = "0123456789ab"


class Sweep:
    """A run root with one sweep folder whose run started at ``T0``; cells are added by state."""

    def __init__(self, root: Path, cells: Dict[str, Dict[str, str]]) -> None:
        self.root = root
        self.dir = root / "sweep"
        self.dir.mkdir(parents=True)
        jobs = {str(n): {"cell_id": cid, "evals": evals, "overrides": []} for n, (cid, evals) in enumerate(cells.items())}
        write_json_atomic(self.dir / store.MANIFEST, {"version": 1, "started": T0, "written": T0 + 50, "jobs": jobs})
        store.refresh_links(self.dir, list(cells))
        for cid in cells:
            store.cells_root(root).joinpath(cid).mkdir(parents=True)

    def path(self, cid: str) -> Path:
        return store.cells_root(self.root) / cid

    def write(self, cid: str, name: str, payload: Dict[str, Any], at: float) -> None:
        """Write ``name`` in the cell folder with modification time ``at``."""
        path = self.path(cid) / name
        write_json_atomic(path, payload)
        os.utime(path, (at, at))

    def spec(self, cid: str, attempt: str, at: float) -> None:
        self.write(cid, "cell.json", {"cell_id": cid, "attempt": attempt, "train": True, "evals": {}}, at)

    def record(self, cid: str, status: str, at: float) -> None:
        self.write(cid, "record.json", {"cell_id": cid, "status": status}, at)

    def result(self, cid: str, key: str, status: str, at: float) -> None:
        self.write(cid, f"evals/{key}/result.json", {"key": key, "status": status}, at)

    def progress(self, cid: str, at: float, **fields: Any) -> None:
        self.write(cid, PROGRESS_NAME, fields, at)


def _id(name: str) -> str:
    return f"tiny-llama-lora-r8-none-hf-{name}{HASH[len(name):]}"


A, B, C, D = _id("a"), _id("b"), _id("c"), _id("d")
PPL = {"perplexity": "perplexity-k"}


def test_counts_and_eta_before_the_first_cell(tmp_path):
    sweep = Sweep(tmp_path, {A: PPL, B: PPL, C: PPL, D: PPL})
    # A: stored ok by an earlier run, reused without work
    sweep.spec(A, "old", T0 - 500)
    sweep.record(A, "ok", T0 - 400)
    sweep.result(A, "perplexity-k", "ok", T0 - 400)
    sweep.progress(A, T0 - 400, attempt="old", phase=DONE, started=T0 - 500, updated=T0 - 400, wall_s=100.0)
    # B: a worker of this run is training it
    sweep.spec(B, "b1", T0 + 10)
    sweep.progress(B, T0 + 30, attempt="b1", phase="train", step=12, max_steps=30, loss=7.4123, started=T0 + 10,
                   updated=T0 + 30)
    # C: never run; D: failed in an earlier run (it runs again) and its run was killed mid-training
    sweep.spec(D, "d0", T0 - 300)
    sweep.record(D, "failed", T0 - 200)
    sweep.progress(D, T0 - 250, attempt="d0", phase="train", step=3, max_steps=30, started=T0 - 300, updated=T0 - 250)

    out = sweep_progress(sweep.dir, now=T0 + 40)
    assert (out.total, out.ok, out.failed, len(out.running), out.left) == (4, 1, 0, 1, 2)
    (running,) = out.running
    assert (running.cell_id, running.phase, running.step, running.max_steps) == (B, "train", 12, 30)
    assert running.elapsed_s == pytest.approx(30.0)
    assert running.log == tmp_path / "cells" / B / "worker.log"
    assert out.walls_s == [] and out.eta_s is None  # A's wall is from an earlier run

    line = format_progress(out, cwd=tmp_path)
    assert line == (f"[1/4 done, 0 failed, 1 running, 2 left] tiny-llama-lora-r8-none-hf-b123…: train step 12/30 loss 7.412"
                    f" | ETA after the first cell | log cells/{B}/worker.log")


def test_eta_after_the_first_cells_is_median_wall_times_cells_left(tmp_path):
    sweep = Sweep(tmp_path, {A: {}, B: {}, C: {}, D: {}})
    sweep.spec(A, "a1", T0 + 1)
    sweep.record(A, "ok", T0 + 40)
    sweep.progress(A, T0 + 41, attempt="a1", phase=DONE, started=T0 + 1, updated=T0 + 41, wall_s=40.0)
    sweep.spec(B, "b1", T0 + 41)  # failed in this run; the worker wrote "done", the parent not yet (no wall_s)
    sweep.record(B, "oom", T0 + 60)
    sweep.progress(B, T0 + 61, attempt="b1", phase=DONE, started=T0 + 41, updated=T0 + 61)
    sweep.spec(C, "c1", T0 + 62)  # just spawned: no progress.json of this attempt yet
    sweep.progress(C, T0 - 900, attempt="earlier", phase=DONE, started=T0 - 990, updated=T0 - 900, wall_s=90.0)

    out = sweep_progress(sweep.dir, now=T0 + 72)
    assert (out.ok, out.failed, len(out.running), out.left) == (1, 1, 1, 1)
    assert out.running[0].phase == "starting" and out.running[0].elapsed_s == pytest.approx(10.0)
    assert sorted(out.walls_s) == [20.0, 40.0]
    assert out.eta_s == pytest.approx(30.0 * 1 + (30.0 - 10.0))  # median 30 s x 1 left + what C has left of 30 s
    assert "| ETA about 0:50 |" in format_progress(out)
    assert "starting" in format_progress(out)


def test_a_record_written_in_this_run_without_a_worker_counts_as_failed(tmp_path):
    sweep = Sweep(tmp_path, {A: {}, B: PPL})
    sweep.record(A, "failed", T0 + 2)  # refused by the preflight (hub offline): no cell.json, no worker
    sweep.spec(B, "old", T0 - 100)
    sweep.record(B, "ok", T0 - 50)  # trained, but the requested evaluation never ran: work is left
    out = sweep_progress(sweep.dir, now=T0 + 5)
    assert (out.ok, out.failed, len(out.running), out.left) == (0, 1, 0, 1)
    assert format_progress(out) == "[0/2 done, 1 failed, 0 running, 1 left] | ETA after the first cell"


def test_a_sweep_without_a_manifest_has_no_progress(tmp_path):
    assert sweep_progress(tmp_path) is None


def test_a_narrow_terminal_drops_the_log_then_the_cell_id(tmp_path):
    running = progress.RunningCell(B, tmp_path / "cells" / B / "worker.log", "train", 3, 30, 7.5)
    out = progress.SweepProgress(total=4, ok=1, running=[running], left=2, eta_s=62.0)
    full = format_progress(out)
    assert len(format_progress(out, width=len(full) + 1)) == len(full)
    assert format_progress(out, width=110).endswith("train step 3/30 loss 7.5 | ETA about 1:02")
    assert format_progress(out, width=86) == "[1/4 done, 0 failed, 1 running, 2 left] train step 3/30 loss 7.5 | ETA about 1:02"
    assert format_progress(out, width=70) == "[1/4 ok 0 failed 1 run 2 left] train step 3/30 loss 7.5 | ETA ~1:02"
    assert len(format_progress(out, width=40)) == 39 and format_progress(out, width=40).endswith("…")
    out.eta_s = None
    assert format_progress(out, width=80) == "[1/4 ok 0 failed 1 run 2 left] train step 3/30 loss 7.5 | ETA after 1st cell"


def test_the_eta_says_about_and_follows_each_finished_cell(tmp_path):
    out = progress.SweepProgress(total=4, ok=1, left=3, walls_s=[10.0], eta_s=progress.eta_s([10.0], 3, []))
    assert format_progress(out).endswith("| ETA about 0:30")
    walls = [10.0, 30.0, 50.0]  # two more cells finished, slower (a loaded machine): the median and the ETA follow
    out = progress.SweepProgress(total=4, ok=3, left=1, walls_s=walls, eta_s=progress.eta_s(walls, 1, []))
    assert format_progress(out).endswith("| ETA about 0:30") and progress.eta_s(walls, 1, []) == 30.0
    assert progress.eta_s([10.0, 30.0], 1, []) == 20.0


def test_clock_text_and_short_id():
    assert [status.clock_text(s) for s in (0, 42.4, 61, 3599.6, 3723, 90000)] == ["0:00", "0:42", "1:01", "1:00:00", "1:02:03", "25:00:00"]
    assert status.short_id(A) == "tiny-llama-lora-r8-none-hf-a123…"
    assert status.short_id("not-a-hashed-id") == "not-a-hashed-id"


# ---- the worker's writer -------------------------------------------------------------------


class Clock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_writer_writes_phases_at_once_and_steps_at_most_once_a_second(tmp_path):
    clock = Clock()
    writer = ProgressWriter(tmp_path, "a1", started=T0, clock=clock)
    writer.phase("train")
    assert read_json(tmp_path / PROGRESS_NAME)["phase"] == "train"
    written = []
    for step in range(1, 33):  # 32 steps of 0.125 s
        clock.t += 0.125
        written.append(writer.step(step, 32, loss=10.0 - step / 10))
    assert sum(written) == 4  # at 1, 2, 3 and 4 s (the phase was written at 0)
    state = read_json(tmp_path / PROGRESS_NAME)
    assert (state["attempt"], state["phase"], state["max_steps"], state["started"]) == ("a1", "train", 32, T0)
    assert state["step"] == 32 and state["loss"] == pytest.approx(6.8)
    assert state["updated"] == pytest.approx(time.time(), abs=5)
    assert writer.step(31, force=True) and read_json(tmp_path / PROGRESS_NAME)["step"] == 31
    assert not list(tmp_path.glob(".*.tmp"))


def test_writer_without_a_folder_writes_nothing(tmp_path):
    writer = ProgressWriter(None, None)
    writer.phase("train")
    writer.step(1, 2, 3.0, force=True)
    assert writer.path is None and writer.state["step"] == 1
    assert not list(tmp_path.iterdir())


def test_finish_marks_done_with_the_wall_time_whatever_the_worker_left(tmp_path):
    write_json_atomic(tmp_path / PROGRESS_NAME, {"attempt": "a1", "phase": "train", "step": 7, "max_steps": 30,
                                                 "started": T0, "updated": T0 + 5})
    finish(tmp_path, "a1", 12.5, now=T0 + 13)
    state = read_json(tmp_path / PROGRESS_NAME)
    assert (state["phase"], state["step"], state["wall_s"], state["updated"]) == (DONE, 7, 12.5, T0 + 13)
    finish(tmp_path, "a2", 3.0, now=T0 + 20)  # a worker that died before its first write
    state = read_json(tmp_path / PROGRESS_NAME)
    assert (state["attempt"], state["phase"], state["step"], state["started"]) == ("a2", DONE, None, T0 + 17)


# ---- the parent's line ---------------------------------------------------------------------


def test_without_a_terminal_a_status_line_comes_at_most_every_30_s(tmp_path):
    clock, said = Clock(100.0), []
    line = StatusLine(tmp_path, said.append, stream=io.StringIO(), tty=False, clock=clock, render=lambda: "status")
    for t in range(101, 200):  # one tick a second, as the parent's wait loop does
        clock.t = float(t)
        line.tick()
    assert said == ["status"] * 3  # at 130, 160 and 190 s: the start line stands for the first 30 s
    line.clear()
    assert said == ["status"] * 3


def test_on_a_terminal_the_line_is_redrawn_in_place_and_cleared(tmp_path):
    stream, said = io.StringIO(), []
    frames = iter(["first", "second"])
    line = StatusLine(tmp_path, said.append, stream=stream, tty=True, clock=Clock(), render=lambda: next(frames))
    line.tick()
    line.tick()
    line.clear()
    line.clear()  # nothing drawn: nothing to clear
    assert stream.getvalue() == "\r\x1b[Kfirst\r\x1b[Ksecond\r\x1b[K"
    assert said == []


def test_a_failing_line_turns_itself_off_once(tmp_path):
    stream, said = io.StringIO(), []

    def broken() -> Optional[str]:
        raise ValueError("bad manifest")

    line = StatusLine(tmp_path, said.append, stream=stream, tty=True, clock=Clock(), render=broken)
    line.tick()
    line.tick()
    assert said == ["(progress line off for this cell: ValueError: bad manifest)"]
    assert not line.due()


def test_the_default_render_reads_the_sweep(tmp_path):
    sweep = Sweep(tmp_path, {A: {}})
    sweep.spec(A, "a1", T0 + 5)
    stream = io.StringIO()
    line = StatusLine(sweep.dir, print, stream=stream, tty=True, columns=lambda: 300)
    line.tick()
    assert stream.getvalue().startswith("\r\x1b[K[0/1 done, 0 failed, 1 running, 0 left] tiny-llama-lora-r8-none-hf-a123…: starting")


def test_the_parent_waits_in_slices_with_the_same_total_timeout(monkeypatch):
    monkeypatch.setattr(status, "REDRAW_S", 0.1)
    ticks = []
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        started = time.monotonic()
        with pytest.raises(subprocess.TimeoutExpired):
            cell._wait(proc, 0.55, lambda: ticks.append(time.monotonic()))
        assert 0.55 <= time.monotonic() - started < 1.5
        assert 3 <= len(ticks) <= 6
    finally:
        proc.kill()
        proc.wait()
    quick = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    assert cell._wait(quick, 30, lambda: None) == 3
    assert cell._wait(subprocess.Popen([sys.executable, "-c", "pass"]), 30, None) == 0


# ---- the worker's log line and the trainer callback ----------------------------------------


def test_log_lines_name_step_loss_lr_and_seconds():
    from harness.backends.hf import log_line

    line = log_line(12, 30, {"loss": 7.41234, "grad_norm": 2.1, "learning_rate": 2e-4, "epoch": 0.1}, 0.2134, 4.56)
    assert line == "step 12/30  loss 7.4123  lr 2.00e-04  grad_norm 2.100  0.213 s/step  4.6 s elapsed"
    assert log_line(10, 30, {"eval_loss": 5.0, "eval_runtime": 1.25}, None, 9.0) == "eval at step 10/30  eval_loss 5.0000  1.2 s"
    assert log_line(30, 30, {"train_runtime": 12.0, "train_loss": 7.2}, None, 12.0) == "train end at step 30/30  12.0 s  train_loss 7.2000"


def test_the_report_callback_logs_every_step_and_throttles_progress(tmp_path):
    pytest.importorskip("transformers")
    from harness.backends.hf import _callbacks

    clock = Clock()
    writer = ProgressWriter(tmp_path, "a1", clock=clock)
    lines = []
    cfg = SimpleNamespace(train=SimpleNamespace(early_stopping_patience=0, eval_every=0))
    report = _callbacks(cfg, meter=None, progress=writer, log=lines.append)[-1]
    state = SimpleNamespace(global_step=0, max_steps=20)
    report.on_train_begin(None, state, SimpleNamespace(should_log=False))
    assert read_json(tmp_path / PROGRESS_NAME)["max_steps"] == 20
    for step in range(1, 21):
        clock.t += 0.25
        state.global_step = step
        report.on_step_end(None, state, SimpleNamespace(should_log=True))
        report.on_log(None, state, SimpleNamespace(), logs={"loss": 5.0 - step / 10, "learning_rate": 1e-4})
    assert len(lines) == 20 and lines[-1].startswith("step 20/20  loss 3.0000  lr 1.00e-04")
    saved = read_json(tmp_path / PROGRESS_NAME)
    assert (saved["step"], saved["loss"]) == (20, pytest.approx(3.0))  # the writes at 1, 2, ... 5 s


def test_the_parent_parses_a_file_again_only_when_it_changed_and_keeps_little(tmp_path):
    files = progress.CachedFiles()
    path = tmp_path / "record.json"
    write_json_atomic(path, {"status": "failed", "train": {"step_times_s": [0.1] * 1000}})
    assert files.json(path) == {"status": "failed"}  # per-step lists are not kept
    assert files.json(path) is files.json(path)  # unchanged: not parsed again
    write_json_atomic(path, {"status": "ok"})
    assert files.json(path) == {"status": "ok"}
    path.unlink()
    assert files.json(path) is None
    manifest = tmp_path / "manifest.json"
    write_json_atomic(manifest, {"started": 1.0, "jobs": {"0": {"cell_id": "a"}}})
    assert files.json(manifest)["jobs"] == {"0": {"cell_id": "a"}}
