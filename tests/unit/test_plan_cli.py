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


def _plan(capsys, argv):
    assert main([*argv, "--json", "--gpu", "h200"]) == 0
    return json.loads(capsys.readouterr().out)["plans"][0]


def test_examples_n_times_tokens_per_example_with_the_assumption_stated(capsys):
    plan = _plan(capsys, [*DONE_WHEN, "--examples", "10000"])
    data = plan["dataset"]
    assert data["examples"] == 10000 and data["tokens_per_example"] == 2048 and data["train_tokens"] == 10000 * 2048
    assert "assumed train.max_seq_len=2048, an upper bound" in data["for"]
    hours = plan["gpus"][0]["hours"]
    assert hours == pytest.approx(data["train_tokens"] / plan["gpus"][0]["tokens_per_s"] / 3600)
    assert main([*DONE_WHEN, "--examples", "10000", "--gpu", "h200"]) == 0
    out = capsys.readouterr().out
    assert "time and cost for: 10,000 examples x 2,048 tokens each = 20,480,000 training tokens" in out


def test_examples_take_tokens_per_example_from_the_users_data(capsys, tmp_path):
    path = tmp_path / "mine.jsonl"
    rows = [{"messages": [{"role": "user", "content": "q" * 40}, {"role": "assistant", "content": "a" * 360}]}] * 3
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    data = _plan(capsys, [*DONE_WHEN, f"data.path={path}", "--examples", "500"])["dataset"]
    assert data["tokens_per_example"] == pytest.approx((40 + 360 + len("user") + len("assistant")) / 4)
    assert "estimated from mine.jsonl: mean of 3 records" in data["for"]
    synthetic = _plan(capsys, ["model=llama", "data=synthetic", "train.max_seq_len=1024", "--examples", "500"])["dataset"]
    assert synthetic["tokens_per_example"] == 1024 and "data=synthetic: exact" in synthetic["for"]


def test_without_examples_the_output_names_the_data_it_is_for(capsys):
    bundled = _plan(capsys, DONE_WHEN)["dataset"]
    assert bundled["for"].startswith("the bundled chat set: ") and "--examples N" in bundled["hint"]
    synthetic = _plan(capsys, ["model=llama", "data=synthetic", "data.seq_len=128", "data.examples=64"])["dataset"]
    assert synthetic["train_tokens"] == 64 * 128 and synthetic["for"].startswith("data=synthetic (128-token rows)")
    hub = _plan(capsys, ["model=llama", "data.hub_id=tatsu-lab/alpaca"])
    assert hub["dataset"]["train_tokens"] is None and "not read offline" in hub["dataset"]["for"]
    assert hub["gpus"][0]["hours"] is None  # never the bundled set's size standing in for a hub dataset


@pytest.mark.parametrize(
    "argv,needle",
    [(["--examples", "0"], "error: --examples=0: must be a positive integer"),
     (["--examples", "5", "--dataset-tokens", "1e6"], "error: --examples=5: give --examples or --dataset-tokens, not both")],
)
def test_bad_examples_are_one_line_and_exit_2(capsys, argv, needle):
    assert main(argv) == 2
    assert needle in capsys.readouterr().err


def test_printed_breakdown_adds_up_and_cpu_4bit_says_it_is_not_modelled(capsys):
    assert main(["model=tiny-llama", "quant=4bit", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    rows = dict(line.strip("|").split("|")[:2] for line in out.splitlines() if line.startswith("| ") and "component" not in line)
    rows = {k.strip(): float(v) for k, v in rows.items()}
    total = rows.pop("total (forward/backward)")
    assert sum(rows.values()) == pytest.approx(total, rel=0.01) and "recompute" in rows
    assert "note: CPU 4bit is not modelled" in out and "time and cost for" not in out  # no GPU, no hours
    assert main(["-m", "model=tiny-llama", "quant=none,4bit", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.count("note: CPU 4bit is not modelled") == 1
