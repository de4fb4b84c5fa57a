"""``python -m harness.plan``: same overrides as a sweep, offline, fast, JSON on request, and torch-free."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from harness.plan.__main__ import main
from tests.conftest import REPO

pytestmark = pytest.mark.unit
DONE_WHEN = ["model=llama", "quant=4bit", "lora.r=16", "train.batch_size=4", "train.max_seq_len=2048"]


def test_breakdown_and_gpu_table_offline_in_seconds(capsys):
    started = time.perf_counter()
    assert main(DONE_WHEN) == 0
    assert time.perf_counter() - started < 10
    out = capsys.readouterr().out
    for needle in ("llama lora r=16 quant=4bit  batch 4 x seq 2048", "| weights |", "| activations |", "| h100-80gb |",
                   "| rtx-3060-12gb |", "max batch", "max seq", "assumed MFU"):
        assert needle in out


def test_json_output_for_scripts(capsys):
    assert main([*DONE_WHEN, "--json", "--gpu", "h100-80gb", "--gpu", "h200"]) == 0
    plan = json.loads(capsys.readouterr().out)["plans"][0]
    assert plan["memory"]["params"]["total"] == 8030261248
    assert [g["gpu"] for g in plan["gpus"]] == ["h100-80gb", "h200"]
    for row in plan["gpus"]:
        assert set(row) >= {"fits", "headroom_gib", "max_batch", "max_seq", "tokens_per_s", "hours", "cost_usd"}


def test_multirun_grid(capsys):
    assert main(["-m", "model=llama,mistral,qwen", "quant=none,8bit,4bit", "lora.r=8,16,64", "--json"]) == 0
    plans = json.loads(capsys.readouterr().out)["plans"]
    assert len(plans) == 27
    assert {(p["cell"]["model"], p["cell"]["quant"], p["cell"]["lora_r"]) for p in plans} == {
        (m, q, r) for m in ("llama", "mistral", "qwen") for q in ("none", "8bit", "4bit") for r in (8, 16, 64)
    }


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["lora.r=0"], "error: lora.r=0: must be a positive integer"),
        (["lora.r=8,16"], "needs -m"),
        (["--gpu", "h1000"], "--gpu=h1000: not in the hardware catalogue"),
        (["--sweeps", "/no/such/sweep"], "--sweeps=/no/such/sweep: no such folder"),
        (["--mfu", "2"], "--mfu=2.0: must be in (0, 1]"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err


def test_planner_never_imports_torch():
    probe = (
        "import sys\n"
        "from harness.plan.__main__ import main\n"
        f"main({DONE_WHEN!r})\n"
        "main(['-m', 'model=tiny-llama,gemma', '--device', 'cpu'])\n"
        "print('TORCH_IN_PLANNER', 'torch' in sys.modules, 'transformers' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "TORCH_IN_PLANNER False False" in result.stdout
