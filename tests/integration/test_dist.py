"""dist cells on CPU: 2 DDP ranks (gloo) through accelerate, the same training as one rank, and no rank outlives its cell.

The invariant and the FSDP refusal run in ``make test``; the process checks (``dist`` marker: kills, two nodes)
in ``make test-dist``, CI's dist tier."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import pytest

from tests.conftest import REPO, records, run_harness

pytestmark = pytest.mark.integration
DETERMINISTIC = ["lora.dropout=0.0", "train.eval_every=0", "train.max_steps=4", "train.warmup_steps=0", "eval=[]",
                 "run.device=cpu"]


def test_two_ranks_of_batch_4_train_as_one_rank_of_batch_8(harness_env, tmp_path):
    one = run_harness(["train.batch_size=8", *DETERMINISTIC, "run.sweep=one"], harness_env, tmp_path)
    two = run_harness(["dist=ddp", "dist.processes=2", "train.batch_size=4", *DETERMINISTIC, "run.sweep=two"],
                      harness_env, tmp_path)
    assert one.returncode == 0 and two.returncode == 0, one.stdout + one.stderr + two.stdout + two.stderr
    (single,) = records(tmp_path / "one").values()
    (ranked,) = records(tmp_path / "two").values()
    assert "-ddp2-" in ranked["cell_id"] and "-ddp" not in single["cell_id"]
    # the same samples in the same order: accelerate shards each global batch of 8 into the ranks' 4 + 4
    assert ranked["train"]["samples"] == single["train"]["samples"] == 32
    assert ranked["train"]["trained_tokens"] == single["train"]["trained_tokens"]
    steps = [step for step, _ in single["train"]["loss_curve"]]
    assert steps == [step for step, _ in ranked["train"]["loss_curve"]] == [1, 2, 3, 4]
    for (_, loss_one), (_, loss_two) in zip(single["train"]["loss_curve"], ranked["train"]["loss_curve"]):
        assert loss_two == pytest.approx(loss_one, rel=1e-4)
    # measured per rank; throughput global and per GPU
    memory = ranked["memory"]
    assert [entry["rank"] for entry in memory["per_rank"]] == [0, 1]
    peaks = [entry["train_peak"]["peak_mib"] for entry in memory["per_rank"]]
    assert memory["train_peak"]["peak_mib"] == max(peaks) and memory["rank_spread_mib"] == pytest.approx(max(peaks) - min(peaks))
    train = ranked["train"]
    assert train["ranks"] == 2
    assert train["tokens_per_s"] == pytest.approx(sum(rank["tokens_per_s"] for rank in train["per_rank"]))
    assert train["tokens_per_s_per_gpu"] == pytest.approx(train["tokens_per_s"] / 2)
    assert train["trainer_settings"]["dist"] == {"distributed_type": "MULTI_CPU", "processes": 2}
    assert ranked["efficiency"]["devices"] == 2


def _pids(*needles: str) -> List[int]:
    """Processes whose command line contains every needle."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if all(needle in cmdline for needle in needles):
            found.append(int(entry.name))
    return found


def _wait_for(path: Path, proc: subprocess.Popen, limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.2)


def _start_long_cell(harness_env, root: Path) -> tuple[subprocess.Popen, Path]:
    args = ["dist=ddp", "dist.processes=2", "train.max_steps=5000", *DETERMINISTIC[:2], "eval=[]", "run.device=cpu",
            f"run.root={root}"]
    proc = subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=REPO, env=harness_env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not (root / "cells").exists() or not list((root / "cells").glob("*/ranks/rank1.pid")):
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "rank 1 never started"
        time.sleep(0.2)
    (cell,) = (root / "cells").iterdir()
    _wait_for(cell / "progress.json", proc)
    return proc, cell


def _gone(cell: Path, limit_s: float = 30) -> List[int]:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        left = _pids("harness.worker", str(cell))
        if not left:
            return []
        time.sleep(0.2)
    return left


def _lock_free(cell: Path) -> bool:
    fd = os.open(cell / ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


@pytest.mark.dist
def test_a_killed_rank_crashes_the_cell_and_stops_every_rank(harness_env, tmp_path):
    proc, cell = _start_long_cell(harness_env, tmp_path)
    rank1 = int((cell / "ranks" / "rank1.pid").read_text())
    time.sleep(1.0)  # inside training: the ranks are in their collectives
    os.kill(rank1, signal.SIGKILL)
    out, _ = proc.communicate(timeout=120)
    assert _gone(cell) == [], out
    assert _lock_free(cell)
    (record,) = records(tmp_path / [p.name for p in tmp_path.iterdir() if p.name != "cells"][0]).values()
    assert record["status"] == "crashed", out
    assert "rank 1 was killed by SIGKILL" in record["error"]


@pytest.mark.dist
def test_kill_9_of_the_worker_leaves_no_rank(harness_env, tmp_path):
    proc, cell = _start_long_cell(harness_env, tmp_path)
    ranks = _pids("harness.worker.rank", str(cell))
    assert len(ranks) == 2
    (worker,) = [pid for pid in _pids("harness.worker", str(cell)) if pid not in ranks]
    os.kill(worker, signal.SIGKILL)
    out, _ = proc.communicate(timeout=120)
    assert _gone(cell) == [], out  # PR_SET_PDEATHSIG: each rank dies with the worker that launched it
    assert _lock_free(cell)
    (record,) = records(tmp_path / [p.name for p in tmp_path.iterdir() if p.name != "cells"][0]).values()
    assert record["status"] == "crashed", out


def test_fsdp_on_cpu_ends_unsupported_and_its_plugin_builds_up_to_cuda(harness_env, tmp_path, monkeypatch):
    result = run_harness(["dist=fsdp", "dist.processes=2", *DETERMINISTIC, "run.sweep=fsdp"], harness_env, tmp_path)
    (record,) = records(tmp_path / "fsdp").values()
    assert record["status"] == "unsupported", result.stdout + result.stderr
    assert "accelerate enables FSDP only on GPUs" in record["error"]
    # what a GPU run builds, built here: the Trainer's FSDP2 plugin arguments and accelerate's plugin from them
    monkeypatch.setattr(os, "environ", dict(os.environ))  # TrainingArguments and the plugin export ACCELERATE_* variables
    from accelerate.utils import FullyShardedDataParallelPlugin
    from trl import SFTConfig

    from harness.backends.dist import offloads, trainer_args
    from harness.config.dist import DistConfig
    from harness.config.schema import HarnessConfig

    cfg = HarnessConfig()
    cfg.dist = DistConfig(strategy="fsdp", processes=2, cpu_offload=True)
    args = SFTConfig(output_dir=str(tmp_path / "t"), use_cpu=True, report_to=[], gradient_checkpointing=False,
                     **trainer_args(cfg))
    plugin = FullyShardedDataParallelPlugin(**args.fsdp_plugin_args)
    assert plugin.fsdp_version == 2 and plugin.transformer_cls_names_to_wrap is None  # accelerate: _no_split_modules
    assert plugin.cpu_ram_efficient_loading is True and os.environ["FSDP_CPU_RAM_EFFICIENT_LOADING"].lower() == "true"
    assert offloads(plugin) and plugin.reshard_after_forward is True
    assert "FULL_STATE_DICT" in str(plugin.state_dict_type)


@pytest.mark.dist
def test_two_nodes_of_one_rank_each_train_one_cell(harness_env, tmp_path):
    """Two "nodes" on this machine under faked SLURM variables: node 0 runs the cell, node 1 follows its rendezvous."""
    args = [sys.executable, "-m", "harness", "dist=ddp", "dist.nodes=2", "dist.processes=2", *DETERMINISTIC,
            f"run.root={tmp_path}", "run.sweep=nodes"]
    slurm = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "localhost", "SLURM_JOB_NUM_NODES": "2", "SLURM_NTASKS": "2",
             "HARNESS_RDZV_HOST": "127.0.0.1"}
    nodes = [subprocess.Popen(args, cwd=REPO, env={**harness_env, **slurm, "SLURM_NODEID": str(node)}, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for node in (0, 1)]
    outs = [node.communicate(timeout=300)[0] for node in nodes]
    (record,) = records(tmp_path / "nodes").values()
    assert record["status"] == "ok", "\n".join(outs)
    assert "-ddp2-" in record["cell_id"] and record["train"]["ranks"] == 2
    assert record["environment"]["ranks"] == {"world": 2, "strategy": "ddp", "nodes": 2}
    assert "node 0 writes the record" in outs[1]
