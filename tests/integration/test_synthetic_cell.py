"""One data=synthetic cell through ``python -m harness``: it trains full-length rows and its record says so."""

from __future__ import annotations

import pytest

from tests.conftest import records, run_harness, sweep_of

pytestmark = pytest.mark.integration


def test_synthetic_cell_trains_rows_of_exactly_seq_len(harness_env, tmp_path):
    args = ["model=tiny-llama", "data=synthetic", "data.seq_len=64", "data.examples=16", "train.batch_size=4",
            "train.max_steps=2", "train.warmup_steps=0", "train.eval_every=0", "train.measure_warmup_steps=1", "eval=[]"]
    result = run_harness(args, harness_env, tmp_path / "runs")
    assert result.returncode == 0, result.stdout + result.stderr
    (record,) = records(sweep_of(tmp_path / "runs")).values()
    assert record["status"] == "ok", record.get("error")
    data, train = record["data"], record["train"]
    assert data["synthetic"] is True and data["seq_len"] == 64
    assert data["token_lengths"] == {"p50": 64, "p95": 64, "max": 64}
    assert data["train"]["examples"] == 16 and data["train"]["loss_tokens"] == data["train"]["tokens"] == 16 * 64
    assert train["max_batch_shape"] == [4, 64]  # every micro-batch is batch x seq_len, no padding
