"""The data pipeline end to end: formats train, bad data stops early, data size is a sweep axis, check CLI."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FAST, REPO, records, run_harness, sweep_of

pytestmark = pytest.mark.integration
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"


def _summary(sweep_dir):
    with open(sweep_dir / "summary.csv") as handle:
        return list(csv.DictReader(handle))


def _with_broken_lines(tmp_path):
    path = tmp_path / "chat.jsonl"
    lines = (FIXTURES / "messages.jsonl").read_text().splitlines()
    lines.insert(3, '{"messages": [{"role": "user", "content": "cut off')
    lines.insert(7, json.dumps({"messages": [{"role": "user", "content": "No answer?"}]}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_data_size_sweep_with_skipped_records_shares_one_tokenization(harness_env, tmp_path):
    path = _with_broken_lines(tmp_path)
    args = ["-m", f"data.path={path}", "data.on_error=skip", "data.max_examples=4,8", *FAST]
    result = run_harness(args, harness_env, tmp_path / "runs")
    assert result.returncode == 0, result.stdout + result.stderr
    sweep = sweep_of(tmp_path / "runs")
    rows = sorted(_summary(sweep), key=lambda r: int(r["examples"]))
    assert [r["examples"] for r in rows] == ["4", "8"] and all(r["status"] == "ok" for r in rows)
    assert all(int(r["trained_tokens"]) > 0 for r in rows)
    data = [r["data"] for r in records(sweep).values()]
    assert all(d["invalid"] == {"invalid_json": 1, "no_assistant_turn": 1} for d in data)
    assert all(d["format"] == "messages" and d["train"]["available"] == 16 for d in data)
    assert sorted(d["cache"]["hit"] for d in data) == [False, True]  # the second cell reused the first one's tokens
    assert len({d["cache"]["key"] for d in data}) == 1


def test_alpaca_style_file_trains_and_records_data_statistics(harness_env, tmp_path):
    result = run_harness([f"data.path={FIXTURES / 'alpaca.json'}", *FAST], harness_env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    (record,) = records(sweep_of(tmp_path)).values()
    data = record["data"]
    assert record["status"] == "ok"
    assert data["format"] == "alpaca" and data["records"] == 20
    assert data["split_examples"] == {"train": 16, "validation": 2, "test": 2}
    assert set(data["filtered"]) == {"min_assistant_tokens", "placeholder", "exact_duplicate", "near_duplicate"}
    assert data["token_lengths"]["max"] > 0 and data["chat_template"] in ("model", "chatml")


def test_invalid_data_stops_the_sweep_before_any_cell(harness_env, tmp_path):
    path = _with_broken_lines(tmp_path)
    result = run_harness(["-m", f"data.path={path}", "lora.r=8,16", *FAST], harness_env, tmp_path / "runs")
    assert result.returncode == 2
    assert f"error: {path}:4: invalid JSON" in result.stderr
    assert "(and 1 more invalid record; data.on_error=skip drops and counts them)" in result.stderr
    assert not list((tmp_path / "runs").glob("*/*/cell.json"))


def _check(args, env):
    return subprocess.run(
        [sys.executable, "-m", "harness.data", "check", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_check_command_reports_without_training(harness_env, tmp_path):
    result = _check([str(FIXTURES / "sharegpt.json")], harness_env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "format      sharegpt (detected)" in out
    assert "records     20 read, 20 valid, 0 invalid" in out
    assert "filters     min_assistant_tokens -0, placeholder -0, exact_duplicate -0, near_duplicate -0" in out
    assert "split       20 kept -> train 16 / validation 2 / test 2 (data.split_seed 1234)" in out  # not train.seed
    assert "p50 " in out and "p95 " in out and "max " in out
    assert out.count("--- training example") == 2 and "\u27e6" in out and "\u27e7" in out

    broken = _check([str(_with_broken_lines(tmp_path))], harness_env)
    assert broken.returncode == 1
    assert "invalid     2 record(s): invalid_json 1, no_assistant_turn 1" in broken.stdout
    assert ":4: invalid JSON" in broken.stdout and "data.on_error=fail" in broken.stderr
    skipped = _check([str(_with_broken_lines(tmp_path)), "data.on_error=skip", "data.format=messages"], harness_env)
    assert skipped.returncode == 0 and "format      messages (data.format)" in skipped.stdout
