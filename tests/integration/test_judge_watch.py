"""Judging while the sweep trains (harness.judge.watch) against the local judge server: cells of a fake sweep
finish one after another, each is judged before the last one ends, and the final judge then makes no call."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.config.generation import JudgeConfig
from harness.judge.keys import judge_key
from harness.judge.run import ANSWERS, judge_lock, judge_pending, stored_result
from harness.judge.watch import JudgeWatch, start_for, wanted
from harness.store.layout import eval_dir, read_manifest, update_manifest, write_eval
from tests.conftest import REPO
from tests.judge_server import JudgeServer

pytestmark = pytest.mark.integration

QUESTIONS = REPO / "tests" / "fixtures" / "eval_sets" / "mt_bench_mixed.jsonl"
BLOCK = {"questions": str(QUESTIONS), "limit": 2, "references": None, "judge_prompts": None}
EVAL_KEY = "mt_bench-k"
CELLS = ("c0", "c1", "c2")


def _settings(server: JudgeServer, cache: Path) -> dict:
    judge = dataclasses.asdict(JudgeConfig(base_url=server.url, model="judge-w", api_key_env=None, concurrency=4,
                                           retries=0))
    return {"judge": judge, "cache_dir": str(cache)}


def _sweep(tmp_path: Path, server: JudgeServer) -> Path:
    """A sweep folder whose three judged cells have not finished yet (manifest entries only)."""
    sweep = tmp_path / "sweep"
    settings = _settings(server, tmp_path / "cache")
    for num, cell in enumerate(CELLS):
        (sweep / cell).mkdir(parents=True)
        key = judge_key("mt_bench", EVAL_KEY, BLOCK, settings["judge"])
        update_manifest(sweep, str(num), {"cell_id": cell, "evals": {"mt_bench": EVAL_KEY},
                                          "judges": {"mt_bench": key}, "judge": settings})
    return sweep


def _finish(sweep: Path, cell: str) -> None:
    """What a job stores when its generation ends: the answers, then the result naming them ok."""
    from harness.judge.mt_bench import load_inputs

    inputs = load_inputs(BLOCK)
    rows = [{"question_id": q["question_id"], "category": q["category"], "questions": q["turns"],
             "turns": [f"{cell} answers turn {t}" for t in range(len(q["turns"]))],
             "tokens": [3] * len(q["turns"]), "cut_off": [False] * len(q["turns"])} for q in inputs.questions]
    folder = eval_dir(sweep / cell, EVAL_KEY)
    folder.mkdir(parents=True)
    (folder / ANSWERS).write_text("".join(json.dumps(row) + "\n" for row in rows))
    write_eval(sweep / cell, EVAL_KEY, {"evaluator": "mt_bench", "status": "ok", "config": BLOCK, "rows": []})


def _judged(sweep: Path, cell: str) -> bool:
    job = next(j for j in read_manifest(sweep)["jobs"].values() if j["cell_id"] == cell)
    return (stored_result(sweep / cell, job["judges"]["mt_bench"]) or {}).get("status") == "ok"


def _wait(condition, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_cells_are_judged_as_they_finish_and_the_final_judge_makes_no_call(tmp_path):
    with JudgeServer() as server:
        sweep = _sweep(tmp_path, server)
        manifest_before = read_manifest(sweep)
        lines: list = []
        watch = JudgeWatch(sweep, poll_s=0.05, say=lines.append).start()
        try:
            for done, cell in enumerate(CELLS):
                _finish(sweep, cell)
                assert _wait(lambda cell=cell: _judged(sweep, cell)), lines  # judged while the later cells still "train"
                assert not any(_judged(sweep, later) for later in CELLS[done + 1:])
        finally:
            started = time.monotonic()
            watch.stop()
        assert time.monotonic() - started < 1.5 and not watch.alive and watch.error is None
        calls = len(server.calls)
        assert calls == watch.totals["calls"] > 0 and watch.totals["results"] == len(CELLS)
        assert read_manifest(sweep) == manifest_before  # the watcher never rewrites a job's entry
        final = judge_pending(sweep, say=lines.append)
        assert final["calls"] == 0 and final["results"] == 0 and len(server.calls) == calls


def test_final_judge_running_beside_a_round_pays_no_call_twice(tmp_path):
    with JudgeServer() as server:
        server.delay_s = 0.6  # 12 calls at concurrency 4: a ~1.8 s round, still running after stop() returns
        sweep = _sweep(tmp_path, server)
        for cell in CELLS:
            _finish(sweep, cell)
        watch = JudgeWatch(sweep, poll_s=0.01, say=lambda line: None).start()
        assert _wait(lambda: len(server.calls) > 0)
        watch.stop()  # returns within ~1 s; the round in flight goes on and holds the judge lock
        assert watch.alive
        final = judge_pending(sweep, say=lambda line: None)  # waits for that round, then finds it done
        distinct = len({json.dumps(body["messages"]) for body in server.calls})
        assert len(server.calls) == distinct and final["calls"] == 0
        assert all(_judged(sweep, cell) for cell in CELLS)


def test_a_held_judge_lock_makes_the_watcher_skip_its_round(tmp_path):
    with JudgeServer() as server:
        sweep = _sweep(tmp_path, server)
        _finish(sweep, "c0")
        watch = JudgeWatch(sweep, say=lambda line: None)
        with judge_lock(sweep) as held:
            assert held and watch.poll() == 0 and not server.calls and not watch.judged
        assert watch.poll() == 1 and _judged(sweep, "c0") and watch.judged == {"c0"}
        assert watch.poll() == 0  # judged once: a later failure is left to the final judge


def test_a_watcher_error_is_one_line_and_ends_only_the_watcher(tmp_path, capfd):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "manifest.json").write_text("{}")  # not a grid: read_manifest raises a one-line error
    watch = JudgeWatch(sweep, poll_s=0.01, say=lambda line: None).start()
    assert _wait(lambda: not watch.alive)
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: judge (during the sweep): ") and watch.error


@pytest.mark.parametrize("config, expected", [
    ({"eval": {"mt_bench": {}, "judge": {}}}, True),
    ({"eval": {"mt_bench": {}, "judge": {"during_sweep": False}}}, False),
    ({"eval": {"judge": {}}}, False),
    ({"eval": {"judge": {}}, "hydra": {"overrides": {"task": ["eval=[mt_bench]"]}}}, True),
    ({"eval": {"judge": {}}, "hydra": {"sweeper": {"params": {"eval": "alpaca_eval,perplexity"}}}}, True),
])
def test_wanted_only_when_a_judged_benchmark_may_run(config, expected):
    assert wanted(config) is expected


def test_start_for_without_judging_is_none_and_imports_no_openai(tmp_path):
    code = ("import sys; from harness.judge.watch import start_for; "
            f"assert start_for({str(tmp_path)!r}, {{'eval': {{'perplexity': {{}}}}}}) is None; "
            "assert 'openai' not in sys.modules and 'httpx' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)
    assert start_for(tmp_path, {"eval": {"mt_bench": {}, "judge": {"during_sweep": False}}}) is None


def test_stop_joins_within_a_second_while_idle(tmp_path):
    watch = JudgeWatch(tmp_path, poll_s=30).start()
    started = time.monotonic()
    watch.stop()
    assert time.monotonic() - started < 1.0 and not watch.alive


def test_the_watcher_leaves_manifest_updates_to_the_final_judge(tmp_path, monkeypatch):
    import harness.judge.run as run

    with JudgeServer() as server:
        sweep = _sweep(tmp_path, server)
        job = read_manifest(sweep)["jobs"]["0"]
        key = job["judges"]["mt_bench"]
        update_manifest(sweep, "0", {**job, "judges": {"mt_bench": "mt_bench-k/judge-stale"}})  # a stale entry
        _finish(sweep, "c0")
        real, writes = run.update_manifest, []
        monkeypatch.setattr(run, "update_manifest", lambda *args: writes.append(args))
        watch = JudgeWatch(sweep, say=lambda line: None)
        assert watch.poll() == 1 and not writes  # a job may be writing its own entry right now
        assert (stored_result(sweep / "c0", key) or {}).get("status") == "ok"
        monkeypatch.setattr(run, "update_manifest", real)
        calls = len(server.calls)
        assert judge_pending(sweep, say=lambda line: None)["calls"] == 0 and len(server.calls) == calls
        assert read_manifest(sweep)["jobs"]["0"]["judges"] == {"mt_bench": key}
