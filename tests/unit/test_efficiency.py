"""FLOPs per token, MFU, cost and projection from a record's figures and the catalogue."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.config.model import ModelConfig
from harness.config.peft import PeftConfig
from harness.config.schema import HarnessConfig
from harness.config.train import TrainConfig
from harness.measure.efficiency import efficiency
from harness.plan.flops import flops_per_token
from harness.plan.params import count_params

pytestmark = pytest.mark.unit
CONF = Path(__file__).resolve().parents[2] / "conf" / "model"


def _cfg(method="lora"):
    model = ModelConfig(**yaml.safe_load((CONF / "llama.yaml").read_text()))
    return HarnessConfig(model=model, peft=PeftConfig(method=method), train=TrainConfig(epochs=2.0))


TRAIN = {"samples": 100, "all_tokens": 100 * 1000, "all_tokens_per_s": 4000.0, "tokens_per_s": 2000.0}
DATA = {"train": {"tokens": 1_000_000}}
H100 = {"device": "cuda", "name": "NVIDIA H100 80GB HBM3", "memory_mib": 81559}


def test_flops_formulas():
    model = _cfg().model
    n = count_params(model).matmul
    attention = 12 * 32 * 1000 * 4096
    assert flops_per_token(model, 1000, full=True) == 6 * n + attention
    assert flops_per_token(model, 1000, adapter_params=10, full=False) == 4 * n + 60 + attention
    counts = count_params(model)
    # every matmul weight incl. the LM head; the input embedding is a lookup, norms are element-wise
    assert n == counts.total - counts.embedding - counts.norms


def test_mfu_cost_energy_and_projection_on_a_catalogue_gpu():
    out = efficiency(_cfg(), TRAIN, DATA, H100, train_s=100.0, nvml={"energy_j": 50_000.0, "absent": {}})
    assert out["hardware"] == "h100-80gb"
    assert out["mfu"] == pytest.approx(out["flops_per_token"] * 4000 / 989.4e12)
    assert out["flops_seq_len"] == 1000
    assert out["avg_power_w"] == pytest.approx(500.0)
    assert out["train_cost_usd"] == pytest.approx(2.99 * 100 / 3600)
    assert out["usd_per_million_trained_tokens"] == pytest.approx(2.99 / 3600 / 2000 * 1e6)
    assert out["projected_train_s"] == pytest.approx(2 * 1_000_000 / 4000)
    assert out["projected_cost_usd"] == pytest.approx(500 / 3600 * 2.99)
    assert out["absent"] == {}


def test_cpu_without_catalogue_entry_gives_null_with_reasons():
    env = {"device": "cpu", "name": "x86_64", "cpu_model": "Some CPU"}
    out = efficiency(_cfg(), TRAIN, DATA, env, train_s=10.0, nvml=None)
    assert out["mfu"] is None and "Some CPU" in out["absent"]["mfu"]
    assert out["train_cost_usd"] is None and "cost" in out["absent"]
    assert out["energy_j"] is None and out["projected_train_s"] is not None
