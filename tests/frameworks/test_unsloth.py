"""hf and unsloth side by side on tiny-llama in fp32: the same work, the same losses, Unsloth's changes undone.

Needs ``.venvs/unsloth`` (``make setup-unsloth``, a few minutes); skipped with the reason when it is not built.
On CPU Unsloth trains with stock transformers + PEFT + TRL plus its chunked cross-entropy, so these
tests check the wiring and fairness, not Unsloth's speed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.store.venvs import REPO
from tests.conftest import records, run_harness, sweep_of

UNSLOTH_PYTHON = REPO / ".venvs" / "unsloth" / "bin" / "python"
pytestmark = [
    pytest.mark.frameworks,
    pytest.mark.skipif(not UNSLOTH_PYTHON.exists(), reason="the unsloth environment is not built: make setup-unsloth"),
]
STEPS = 10
TRAJECTORY_TOLERANCE = 1e-5
"""Largest loss difference allowed at any of the 10 steps. The two differ only in the order fp32 sums are taken
(Unsloth's chunked cross-entropy on CPU): measured at most 9.5e-7 here (2 ulp of a loss near 7.6), while a real
difference in the work (another LoRA init, dropout draw, sample order, bf16) moves the second step's loss by 1e-3 or
more. The same bound as the first-step check (harness.measure.fairness.LOSS_TOLERANCE), about 20 ulp."""


def _by_framework(root: Path) -> dict:
    return {view["config"]["framework"]["name"]: view for view in records(sweep_of(root)).values()}


def test_hf_and_unsloth_do_the_same_work_in_fp32(harness_env, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    result = run_harness(["-m", "framework=hf,unsloth", "model=tiny-llama", "model.dtype=float32", f"train.max_steps={STEPS}",
                          "train.eval_every=0", "train.measure_warmup_steps=1", "eval=[]"], harness_env, root)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    cells = _by_framework(root)
    assert {name: view["status"] for name, view in cells.items()} == {"hf": "ok", "unsloth": "ok"}
    hf, unsloth = cells["hf"]["train"], cells["unsloth"]["train"]
    for key in ("trained_tokens", "trainable_params", "total_params", "optimizer_steps", "samples"):
        assert hf[key] == unsloth[key], key
    assert hf["optimizer_steps"] == STEPS
    assert abs(hf["loss_curve"][0][1] - unsloth["loss_curve"][0][1]) <= 1e-5  # LoRA starts as a no-op
    assert [step for step, _ in hf["loss_curve"]] == [step for step, _ in unsloth["loss_curve"]] == list(range(1, STEPS + 1))
    worst = max(abs(a - b) for (_, a), (_, b) in zip(hf["loss_curve"], unsloth["loss_curve"]))
    assert worst <= TRAJECTORY_TOLERANCE, (worst, hf["loss_curve"], unsloth["loss_curve"])
    # the settings each trainer actually used agree; what Unsloth changed on its own is recorded and was undone
    used, theirs = hf["trainer_settings"], unsloth["trainer_settings"]
    assert {k: theirs[k] for k in used} == used
    assert used["optim"] == "adamw_torch" and used["bf16"] is False and used["param_dtype"] == "float32"
    assert theirs["mixed_precision"] == "no"
    assert theirs["unsloth_changed"].get("optim", {"forced": "adamw_torch"})["forced"] == "adamw_torch"
    assert cells["unsloth"]["environment"]["libraries"]["unsloth"] is not None  # its own environment's versions
    assert cells["hf"]["environment"]["libraries"]["unsloth"] is None
    assert "did not do the same work" not in (sweep_of(root) / "summary.md").read_text()


def test_what_unsloth_cannot_do_on_cpu_is_unsupported_naming_the_key(harness_env, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    result = run_harness(["framework=unsloth", "model=tiny-llama", "quant=8bit", "train.max_steps=2", "train.eval_every=0",
                          "eval=[]"], harness_env, root)
    assert result.returncode == 1
    (view,) = records(sweep_of(root)).values()
    assert view["status"] == "unsupported"
    assert view["error"].startswith("quant.mode=8bit: Unsloth's CPU path has no 8-bit loading")
