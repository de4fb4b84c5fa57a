"""hf and litgpt side by side on tiny-llama in fp32: the same micro-batches, the same first step, evaluation alike.

Needs ``.venvs/litgpt`` (``make setup-litgpt``, about a minute); skipped with the reason when it is not built.
LitGPT draws its LoRA A matrices from its own init order, so after the first step the two trajectories part by
the size of that draw; the first step (LoRA is a no-op at init), the work done and the evaluation path must agree.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.store.venvs import REPO
from tests.conftest import records, run_harness, sweep_of

LITGPT_PYTHON = REPO / ".venvs" / "litgpt" / "bin" / "python"
pytestmark = [
    pytest.mark.frameworks,
    pytest.mark.skipif(not LITGPT_PYTHON.exists(), reason="the litgpt environment is not built: make setup-litgpt"),
]
STEPS = 6


def _by_framework(root: Path) -> dict:
    return {view["config"]["framework"]["name"]: view for view in records(sweep_of(root)).values()}


def test_hf_and_litgpt_do_the_same_work_and_are_evaluated_alike(harness_env, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    result = run_harness(["-m", "framework=hf,litgpt", "model=tiny-llama", "model.dtype=float32", f"train.max_steps={STEPS}",
                          "train.eval_every=3", "train.lr_scheduler=cosine", "train.warmup_steps=0",
                          "train.measure_warmup_steps=1", "eval=[perplexity]"], harness_env, root)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    cells = _by_framework(root)
    assert {name: view["status"] for name, view in cells.items()} == {"hf": "ok", "litgpt": "ok"}
    hf, lit = cells["hf"]["train"], cells["litgpt"]["train"]
    for key in ("trained_tokens", "all_tokens", "trainable_params", "optimizer_steps", "samples", "padded_tokens"):
        assert hf[key] == lit[key], key
    assert lit["optimizer_steps"] == STEPS and len(lit["step_times_s"]) == STEPS
    assert abs(hf["loss_curve"][0][1] - lit["loss_curve"][0][1]) <= 1e-5  # LoRA starts as a no-op
    assert [s for s, _ in lit["eval_curve"]] == [s for s, _ in hf["eval_curve"]] == [3, 6]
    assert abs(hf["loss_curve"][-1][1] - lit["loss_curve"][-1][1]) < 0.05  # trained alike, not bitwise (LoRA init draw)
    # measured by the runner's own meters, in LitGPT's process
    memory = cells["litgpt"]["memory"]["train_peak"]
    assert memory["counter"] == "host_peak_rss" and memory["peak_mib"] > 0
    assert cells["litgpt"]["environment"]["runner"]["libraries"]["litgpt"]
    assert lit["trainer_settings"]["precision"] == "32-true" and lit["trainer_settings"]["max_grad_norm"] == 1.0
    # scored by the harness's own evaluator on the merged weights, like hf's adapter
    for name in ("hf", "litgpt"):
        (result_file,) = ((sweep_of(root) / cells[name]["cell_id"]) / "evals").glob("perplexity-*/result.json")
        assert json.loads(result_file.read_text())["status"] == "ok", name
    assert (sweep_of(root) / cells["litgpt"]["cell_id"] / "model" / "model.safetensors").exists()
    assert "did not do the same work" not in (sweep_of(root) / "summary.md").read_text()


def test_what_litgpt_cannot_do_is_unsupported_naming_the_key(harness_env, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    result = run_harness(["-m", "framework=litgpt", "model=tiny-llama", "peft=dora,lora", "quant=none,4bit",
                          "train.max_steps=2", "train.eval_every=0", "eval=[]"], harness_env, root)
    assert result.returncode == 1
    errors = sorted((v["status"], v["error"]) for v in records(sweep_of(root)).values())
    assert [status for status, _ in errors].count("ok") == 1
    unsupported = [error for status, error in errors if status == "unsupported"]
    assert len(unsupported) == 3
    assert sum(error.startswith("peft.method=dora:") for error in unsupported) == 1  # the quantization is named first
    assert sum(error.startswith("quant.mode=4bit:") for error in unsupported) == 2
