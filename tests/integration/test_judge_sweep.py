"""The judge phase end to end: a tiny sweep generates MT-Bench and AlpacaEval answers, the
parent judges them against a local OpenAI-compatible server, and ``python -m harness.judge``
re-judges from the cache, retries only failed calls, and never leaks the API key."""

from __future__ import annotations

import csv
import hashlib
import math
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Optional

import pytest

from tests.conftest import FAST, REPO, make_env, run_harness, sweep_of
from tests.judge_server import JudgeServer

pytestmark = pytest.mark.integration

FIXTURES = REPO / "tests" / "fixtures" / "eval_sets"
SECRET = "test-secret-key-5f2e9a"
KEY_ENV = "HARNESS_TEST_JUDGE_KEY"


def _digest(body: Dict[str, Any]) -> int:
    return int(hashlib.sha256(str(body["messages"]).encode()).hexdigest(), 16)


def varied_verdict(body: Dict[str, Any]) -> str:
    """A rating in 1..10 fixed by the prompt (so a clean and a retried run must agree); 'm'/'M' for AlpacaEval."""
    if body.get("logprobs"):
        return "m" if _digest(body) % 3 else "M"
    return f"The answer is short. Rating: [[{1 + _digest(body) % 10}]]"


def varied_logprobs(body: Dict[str, Any]) -> Optional[list]:
    p = 0.1 + 0.8 * ((_digest(body) >> 8) % 100) / 100
    return [("m", math.log(p)), ("M", math.log(1 - p)), ("The", -9.0)]


def judge_args(server: JudgeServer, model: str = "judge-a") -> list:
    return [f"eval.judge.base_url={server.url}", f"eval.judge.model={model}", f"eval.judge.api_key_env={KEY_ENV}",
            "eval.judge.concurrency=8", "eval.judge.retries=0"]


SWEEP = ["-m", "model=tiny-llama", "lora.r=8,16", "eval=[mt_bench,alpaca_eval]",
         f"eval.mt_bench.questions={FIXTURES / 'mt_bench_mixed.jsonl'}", "eval.mt_bench.limit=4",
         "eval.mt_bench.max_new_tokens=12", f"eval.alpaca_eval.references={FIXTURES / 'alpaca_eval_references.json'}",
         "eval.alpaca_eval.limit=6", "eval.alpaca_eval.max_new_tokens=12", *FAST]


@pytest.fixture(scope="module")
def judged(tmp_path_factory: pytest.TempPathFactory):
    """(server, env, run root, sweep folder, first run's output) after one judged 2-cell sweep."""
    cache = tmp_path_factory.mktemp("judge-cache")
    root = tmp_path_factory.mktemp("judge-runs")
    env = {**make_env(cache), KEY_ENV: SECRET}
    with JudgeServer() as server:
        server.verdict, server.logprobs = varied_verdict, varied_logprobs
        proc = run_harness(SWEEP + judge_args(server), env, root, timeout=300)
        yield server, env, root, sweep_of(root), proc


def judge_cmd(sweep: Path, env: Dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.judge", str(sweep), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def summary(sweep: Path) -> list:
    with open(sweep / "summary.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_sweep_scores_every_cell_per_turn_and_category_with_deltas(judged) -> None:
    server, env, root, sweep, proc = judged
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = summary(sweep)
    assert len(rows) == 2
    for row in rows:
        for column in ("mt_bench", "mt_bench_turn1", "mt_bench_turn2", "mt_bench_writing", "mt_bench_math",
                       "mt_bench_delta", "alpaca_wr", "alpaca_wr_se", "alpaca_lc_wr_minimal", "alpaca_wr_delta"):
            assert row.get(column) not in (None, ""), (column, row)
        assert 1 <= float(row["mt_bench"]) <= 10
        assert 0 <= float(row["alpaca_wr"]) <= 100
        assert int(float(row["mt_bench_judged"])) == 8 and int(float(row["mt_bench_failed"])) == 0
    assert "judge:" in proc.stdout and "mt_bench" in proc.stdout


def test_api_key_is_sent_but_never_written(judged) -> None:
    server, env, root, sweep, proc = judged
    assert any(SECRET in header for header in server.auth_headers)
    for folder in (root, Path(env["HARNESS_CACHE"])):
        for path in folder.rglob("*"):
            if path.is_file():
                assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in proc.stdout + proc.stderr


def test_rejudge_makes_no_calls_and_a_constant_judge_scores_exactly(judged) -> None:
    server, env, root, sweep, proc = judged
    before = len(server.calls)
    again = judge_cmd(sweep, env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(server.calls) == before
    server.verdict = lambda body: "m" if body.get("logprobs") else "Rating: [[7]]"
    seven = judge_cmd(sweep, env, "eval.judge.model=judge-seven")
    assert seven.returncode == 0, seven.stdout + seven.stderr
    assert all(float(row["mt_bench"]) == 7.0 and float(row["mt_bench_turn2"]) == 7.0 for row in summary(sweep))
    server.verdict = varied_verdict


def test_failed_calls_are_retried_exactly_and_match_a_clean_run(judged) -> None:
    server, env, root, sweep, proc = judged
    assert judge_cmd(sweep, env, "eval.judge.model=judge-a").returncode == 0  # back to judge-a: cached, no calls
    clean = {row["cell"]: row for row in summary(sweep)}  # judge-a's rows, judged without failures
    failures = []

    def half(body: Dict[str, Any], number: int) -> Optional[int]:
        if number % 2:
            failures.append(number)
            return 500
        return None

    server.fail = half
    flaky = judge_cmd(sweep, env, "eval.judge.model=judge-b", "eval.judge.retries=0")
    server.fail = None
    assert flaky.returncode == 1, flaky.stdout + flaky.stderr
    assert "retries only those" in flaky.stdout and failures
    before = len(server.calls)
    retry = judge_cmd(sweep, env, "eval.judge.model=judge-b")
    assert retry.returncode == 0, retry.stdout + retry.stderr
    assert len(server.calls) - before == len(failures)  # exactly the failed calls, nothing twice
    for row in summary(sweep):
        for column in ("mt_bench", "mt_bench_turn1", "mt_bench_turn2", "alpaca_wr", "alpaca_lc_wr_minimal", "mt_bench_delta"):
            assert float(row[column]) == pytest.approx(float(clean[row["cell"]][column])), column


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def transformers_server(judged):
    """``transformers serve`` on 127.0.0.1 with the session's tiny model: a real local judge that ignores logprobs."""
    import time
    import urllib.request

    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    server, env, root, sweep, proc = judged
    (model_dir,) = [p for p in (Path(env["HARNESS_CACHE"]) / "models").glob("tiny-llama-*") if p.is_dir()]
    port = _free_port()
    serve = subprocess.Popen([str(Path(sys.executable).with_name("transformers")), "serve", "--host", "127.0.0.1",
                              "--port", str(port), str(model_dir)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("transformers serve did not come up within 90 s")
        yield f"http://127.0.0.1:{port}/v1", str(model_dir)
    finally:
        serve.terminate()
        serve.wait(timeout=30)


@pytest.mark.e2e
def test_a_real_local_model_server_as_judge_counts_every_judgment(judged, transformers_server) -> None:
    server, env, root, sweep, proc = judged
    url, model = transformers_server
    out = judge_cmd(sweep, env, f"eval.judge.base_url={url}", f"eval.judge.model={model}", "eval.judge.api_key_env=null",
                    "eval.judge.max_tokens=16", "eval.judge.concurrency=2", "eval.judge.retries=1")
    # a random-weight judge rambles past max_tokens with no [[rating]] or answers nothing: those replies are
    # failed calls (retried once, never cached), so the run may fail; everything else is parsed, unparseable
    # or a fallback, and no judgment is dropped
    assert out.returncode in (0, 1) and not out.stderr.strip(), out.stdout[-3000:] + out.stderr[-3000:]
    if out.returncode == 1:
        assert "truncated reply" in out.stdout or "empty reply" in out.stdout, out.stdout[-3000:]
    from harness.judge.run import stored_result
    from harness.store.layout import read_manifest

    jobs = read_manifest(sweep)["jobs"].values()  # the judges it points at are this setting's results
    results = [stored_result(sweep / job["cell_id"], key) for job in jobs for key in job["judges"].values()]
    assert all(r["judge"]["model"] == model for r in results)
    assert sorted(r["evaluator"] for r in results) == ["alpaca_eval"] * 2 + ["mt_bench"] * 2
    for result in results:
        counts = {r["metric"]: int(r["value"]) for r in result["rows"] if r["unit"] == "count"}
        wanted = 8 if result["evaluator"] == "mt_bench" else 6  # 4 two-turn questions / 6 instructions per cell
        assert counts["judged"] + counts["unparseable"] + counts["failed"] == wanted, counts
        assert result["judge"]["n_judged"] <= wanted // (2 if result["evaluator"] == "mt_bench" else 1)
