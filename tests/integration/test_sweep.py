"""End-to-end sweeps on tiny models: cells, statuses, summary, resume, isolation."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import FAST, REPO, records, run_harness, sweep_of

pytestmark = pytest.mark.integration


def _summary(sweep_dir):
    with open(sweep_dir / "summary.csv") as handle:
        return list(csv.DictReader(handle))


def _as_foreground() -> None:
    """SIGINT as a terminal's foreground command gets it: caught, not blocked (whatever this process inherited)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_four_cell_multirun_and_resume_after_interrupt(harness_env, tmp_path):
    args = ["-m", "model=tiny-llama,tiny-mistral", "lora.r=8,16", *FAST]
    # Interrupt the sweep once its first cell has a record, as a user's Ctrl-C would.
    err = tmp_path / "stderr.txt"
    with open(err, "w") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness", *args, f"run.root={tmp_path}"],
            cwd=REPO, env=harness_env, stdout=subprocess.DEVNULL, stderr=handle, text=True,
            preexec_fn=_as_foreground,
        )
    deadline = time.time() + 300
    while time.time() < deadline and not list(tmp_path.glob("cells/*/evals/*/result.json")):
        time.sleep(0.2)
    proc.send_signal(2)  # SIGINT
    try:  # warm cells take ~1.5 s: an impatient user's second Ctrl-C (ignored once the first is handled)
        proc.wait(timeout=1.0)
    except subprocess.TimeoutExpired:
        proc.send_signal(2)
    assert proc.wait(timeout=60) == 130
    lines = err.read_text().strip().splitlines()  # one line, no traceback
    assert len(lines) == 1 and lines[0].startswith("interrupted (Ctrl-C)"), lines
    err.unlink()
    sweep = sweep_of(tmp_path)
    assert sweep.name.startswith("lora.r=8,16__model=tiny-llama,tiny-mistral")
    done_before = {cid: r for cid, r in records(sweep).items() if r["status"] == "ok"}
    assert 1 <= len(done_before) < 4
    rows = _summary(sweep)  # the summary was written on Ctrl-C: the whole grid, finished cells ok
    assert len(rows) == 4 and sum(r["status"] == "ok" for r in rows) == len(done_before)
    # the cell Ctrl-C stopped reads interrupted, never "not run"; a never-started one keeps its axis values
    assert {r["status"] for r in rows} <= {"ok", "interrupted", "skipped"} and sum(r["status"] == "interrupted" for r in rows) <= 1
    assert all(r["model"] and r["lora_r"] for r in rows), rows
    mtimes = {cid: (sweep / cid / "record.json").stat().st_mtime for cid in done_before}

    result = run_harness(args, harness_env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("reused (stored ok, no job started)") == len(done_before)
    for cid, mtime in mtimes.items():  # finished cells were not rerun
        assert (sweep / cid / "record.json").stat().st_mtime == mtime
    rows = _summary(sweep)
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
    # the axes lead, rows in their natural order (r8 before r16), not by cell hash
    assert [(r["model"], r["lora_r"]) for r in rows] == [
        ("tiny-llama", "8"), ("tiny-llama", "16"), ("tiny-mistral", "8"), ("tiny-mistral", "16")
    ]
    assert list(rows[0])[:3] == ["model", "lora_r", "cell"]  # in the order the command named them
    for row in rows:
        assert float(row["peak_mem_mib"]) > 0 and row["mem_counter"] == "host_peak_rss"
        assert float(row["tokens_per_s"]) > 0 and float(row["perplexity"]) > 1 and row["weights"] == "random"
    assert "4/4 cells ok" in result.stdout
    assert "\ndata: bundled chat.jsonl — " in result.stdout and "(split_seed 1234)" in result.stdout  # not train.seed
    assert "note: random-weight tiny models" in result.stdout


def test_qlora_and_dora_cells(harness_env, tmp_path):
    result = run_harness(["-m", "quant=none,4bit", "peft=lora,dora", *FAST], harness_env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    sweep = sweep_of(tmp_path)
    rows = _summary(sweep)
    assert {(r["quant"], r["peft"]) for r in rows} == {("none", "lora"), ("none", "dora"), ("4bit", "lora"), ("4bit", "dora")}
    trainable = {(r["quant"], r["peft"]): int(r["trainable_params"]) for r in rows}
    assert trainable[("none", "dora")] > trainable[("none", "lora")]  # DoRA adds magnitude vectors


def test_failing_cells_become_statuses_and_others_finish(harness_env, tmp_path):
    args = [
        "-m",
        "framework.backend=tests.fault_backend:FaultBackend",
        "+framework.options.fault=none,raise,exit,signal,oom,hard_exit,host_oom",
        *FAST,
    ]
    result = run_harness(args, harness_env, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    sweep = sweep_of(tmp_path)
    by_fault = {r["config"]["framework"]["options"]["fault"]: r for r in records(sweep).values()}
    assert {k: v["status"] for k, v in by_fault.items()} == {
        "none": "ok", "raise": "failed", "exit": "failed", "signal": "crashed", "oom": "oom", "hard_exit": "crashed",
        "host_oom": "oom",
    }
    assert "DefaultCPUAllocator" in by_fault["host_oom"]["error"]  # torch's own host allocator error, under a real limit
    assert by_fault["signal"]["error"] == "worker killed by SIGKILL, cause unknown"  # no OOM-killer guess without the counter
    assert by_fault["raise"]["error"] == "RuntimeError: injected failure"
    assert "Traceback" in by_fault["raise"]["traceback"]
    assert by_fault["exit"]["error"] == "the cell called sys.exit(3)"
    assert "SIGKILL" in by_fault["signal"]["error"]
    assert "code 7" in by_fault["hard_exit"]["error"]
    assert by_fault["none"]["metrics"], "the healthy cell still trained and evaluated"
    assert "1/7 cells ok" in result.stdout
    assert len(_summary(sweep)) == 7
    # the end-of-sweep report keeps every cell: each table and the page name the non-ok statuses
    tables = (sweep / "report.md").read_text().split("### ")[1:]
    assert tables and all("does not fit" in t and "failed" in t and "crashed" in t for t in tables)
    page = (sweep / "report.html").read_text()
    assert page.count("does not fit") >= 2 and "crashed" in page
    assert all((sweep / name).is_file() for name in ("report.tex", "cells.parquet", "metrics.parquet", "cells.csv",
                                                         "plotly.min.js"))


def test_timeout_becomes_a_status(harness_env, tmp_path):
    args = ["framework.backend=tests.fault_backend:FaultBackend", "+framework.options.fault=hang", "run.timeout_s=8", *FAST]
    result = run_harness(args, harness_env, tmp_path)
    assert result.returncode == 1
    (record,) = records(sweep_of(tmp_path)).values()
    assert record["status"] == "timeout" and "run.timeout_s=8" in record["error"]


def test_invalid_value_fails_before_any_cell(harness_env, tmp_path):
    result = run_harness(["-m", "lora.r=0,8"], harness_env, tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: lora.r=0: must be a positive integer"
    assert not list(tmp_path.glob("*/*/cell.json"))


def test_real_model_fails_only_where_it_needs_the_hub(harness_env, tmp_path):
    result = run_harness(["-m", "model=llama,mistral", "lora.r=8,16"], harness_env, tmp_path)
    assert result.returncode == 1
    recs = list(records(sweep_of(tmp_path)).values())
    assert len(recs) == 4
    for record in recs:
        assert record["status"] == "failed"
        assert "needs the Hugging Face hub" in record["error"] and "\n" not in record["error"]


def test_parent_never_imports_torch(harness_env, tmp_path):
    probe = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('TORCH_IN_PARENT', 'torch' in sys.modules))\n"
        "from harness.__main__ import main\n"
        f"sys.argv = ['harness', *{FAST!r}, 'run.root={tmp_path}']\n"
        "main()\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=harness_env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "TORCH_IN_PARENT False" in result.stdout
    assert list(tmp_path.glob("*/summary.csv"))
    # Progress (harness.store.progress), on the same cell: progress.json ends "done" with the wall time, the
    # worker's log has one line per step, and stdout (not a terminal) has the start line, naming the
    # log, before the end line.
    (cell_dir,) = tmp_path.glob("cells/*")
    state = json.loads((cell_dir / "progress.json").read_text())
    assert state["phase"] == "done" and state["step"] == state["max_steps"] == 4 and state["wall_s"] > 0
    log = (cell_dir / "worker.log").read_text()
    assert all(f"step {n}/4  loss " in log and "s/step" in log for n in range(1, 5)), log
    start = result.stdout.index(f"{cell_dir.name}: training  (log: {cell_dir / 'worker.log'})")
    assert result.stdout.index(f"{cell_dir.name}: ok") > start


def test_rerun_reuses_ok_cell_and_force_reruns_it(harness_env, tmp_path):
    args = ["train.max_steps=1", "train.eval_every=0", "run.sweep=one"]
    first = run_harness(args, harness_env, tmp_path)
    assert first.returncode == 0, first.stderr
    (cid,) = records(tmp_path / "one")
    stamp = (tmp_path / "one" / cid / "record.json").stat().st_mtime
    again = run_harness(args, harness_env, tmp_path)
    assert "reused stored cell" in again.stdout
    assert (tmp_path / "one" / cid / "record.json").stat().st_mtime == stamp
    forced = run_harness([*args, "run.force=true"], harness_env, tmp_path)
    assert forced.returncode == 0 and "reused" not in forced.stdout
    assert list(records(tmp_path / "one")) == [cid]  # run.force does not change the cell id
    assert (tmp_path / "one" / cid / "record.json").stat().st_mtime > stamp
