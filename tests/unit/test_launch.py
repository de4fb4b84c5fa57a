"""harness.sweep.launch: cells at once per launcher, threads per cell, a GPU per cell through lock files (fake GPU lists)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from harness.plan.calibrate import calibrate
from harness.store import launch as launch_record
from harness.store.records import CELL_SPEC_NAME
from harness.sweep import launch
from harness.sweep.launch import Launcher, launcher_of, lease_gpu, parse_visible, placement, try_lease

pytestmark = pytest.mark.unit

JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"


@pytest.mark.parametrize("node, cells, cores, at_once", [
    ({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, 4, 8, 1),
    ({"_target_": JOBLIB, "n_jobs": 2}, 4, 2, 2),
    ({"_target_": JOBLIB, "n_jobs": 8}, 4, 16, 4),  # never more than the grid
    ({"_target_": JOBLIB, "n_jobs": -1}, 10, 6, 6),  # joblib: -1 = every core
    ({"_target_": JOBLIB, "n_jobs": -2}, 10, 6, 5),
    ({"_target_": JOBLIB, "n_jobs": 1}, 4, 2, 1),
    ({"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"}, 3, 2, 3),
    ({"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher", "array_parallelism": 8}, 6, 64, 1),
    ({"_target_": "some.OtherLauncher"}, 4, 2, 1),
])
def test_cells_at_once_per_launcher(node, cells, cores, at_once):
    assert launcher_of(node, cells, cores).at_once == at_once


def test_ray_counts_the_cluster_cpus_per_task():
    node = {"_target_": "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher", "ray": {"remote": {"num_cpus": 2}}}
    got = launcher_of(node, 10, 4, ray_cpus=lambda: 8.0)
    assert (got.name, got.at_once, got.threads) == ("ray", 4, 2)
    assert launcher_of(node, 3, 4, ray_cpus=lambda: 8.0).at_once == 3


@pytest.mark.parametrize("at_once, cores, override, threads", [(1, 8, None, None), (2, 2, None, 1), (3, 16, None, 5),
                                                               (4, 2, None, 1), (2, 8, 3, 3), (1, 8, 2, 2)])
def test_threads_per_cell_split_the_cores(at_once, cores, override, threads):
    info = launch.plan_placement(Launcher("joblib", at_once), device="cpu", run={"threads_per_cell": override},
                                 environ={}, ncores=cores)
    assert info["threads_per_cell"] == threads and info["cells_at_once"] == at_once
    assert "gpu_shared" not in info  # a CPU cell has no GPU to share


@pytest.mark.parametrize("value, parsed", [(None, None), ("", []), ("0,1", ["0", "1"]), (" 2 , 3", ["2", "3"]),
                                           ("-1", []), ("0,-1,2", ["0"]), ("GPU-1a2b,MIG-3c", ["GPU-1a2b", "MIG-3c"])])
def test_cuda_visible_devices_is_read_as_cuda_reads_it(value, parsed):
    assert parse_visible(value) == parsed


def test_a_set_cuda_visible_devices_is_respected_and_never_probed():
    def probe():
        raise AssertionError("nvidia-smi must not be asked when CUDA_VISIBLE_DEVICES is set")

    assert launch.visible_gpus({"CUDA_VISIBLE_DEVICES": "4,5"}, probe) == ["4", "5"]
    assert launch.visible_gpus({}, lambda: ["0", "1", "2"]) == ["0", "1", "2"]


def test_probe_reads_nvidia_smi():
    class Out:
        returncode, stdout = 0, "0\n1\n"

    assert launch.probe_gpus(run=lambda *a, **k: Out()) == ["0", "1"]


def test_each_cell_gets_its_own_gpu_until_all_are_held(tmp_path):
    gpus = ["0", "1"]
    first, second = try_lease(gpus, tmp_path), try_lease(gpus, tmp_path)
    assert (first.gpu, second.gpu) == ("0", "1")
    assert try_lease(gpus, tmp_path) is None  # every GPU held: a third cell must wait
    launch.release(first)
    third = try_lease(gpus, tmp_path)
    assert third.gpu == "0"
    for lease in (second, third):
        launch.release(lease)


def test_cells_share_a_gpu_only_when_every_gpu_is_busy(tmp_path):
    gpus = ["0", "1"]
    leases = [try_lease(gpus, tmp_path, per_gpu=2) for _ in range(4)]
    assert [(lease.gpu, lease.slot) for lease in leases] == [("0", 0), ("1", 0), ("0", 1), ("1", 1)]
    assert try_lease(gpus, tmp_path, per_gpu=2) is None
    for lease in leases:
        launch.release(lease)


def test_a_cell_waits_for_a_free_gpu_and_says_so_once(tmp_path):
    held = try_lease(["0"], tmp_path)
    said, sleeps = [], []

    def sleep(seconds):
        sleeps.append(seconds)
        if len(sleeps) == 3:
            launch.release(held)

    lease = lease_gpu(["0"], tmp_path, say=said.append, sleep=sleep, poll_s=0.01)
    assert lease.gpu == "0" and len(sleeps) == 3 and len(said) == 1 and "waiting for a free GPU" in said[0]
    launch.release(lease)


def test_lock_folder_is_per_host_and_per_slurm_job():
    assert launch.lock_namespace({}, host="node7") == "node7"
    # inside a SLURM job every job's first GPU is "0" in its own cgroup: another job's lock must not block it
    assert launch.lock_namespace({"SLURM_JOB_ID": "4242"}, host="node7") == "node7-slurm4242"


def _spec(cell_dir: Path, device: str, run: dict) -> Path:
    cell_dir.mkdir(parents=True, exist_ok=True)
    (cell_dir / CELL_SPEC_NAME).write_text(json.dumps({"identity": {"device": device}, "config": {"run": run}}))
    return cell_dir


def test_placement_hands_a_cuda_worker_one_gpu_and_its_threads(tmp_path):
    run = {"cache_dir": str(tmp_path / "cache")}
    joblib = Launcher("joblib", 2, {"n_jobs": 2})
    env = {"CUDA_VISIBLE_DEVICES": "2,3"}  # as SLURM or the user set it: only these are handed out
    with placement(_spec(tmp_path / "a", "cuda:NVIDIA H100", run), environ=env, launcher=joblib, host="h") as a, \
            placement(_spec(tmp_path / "b", "cuda:NVIDIA H100", run), environ=env, launcher=joblib, host="h") as b:
        assert (a.env["CUDA_VISIBLE_DEVICES"], b.env["CUDA_VISIBLE_DEVICES"]) == ("2", "3")
        assert len(a.fds) == 1 and a.fds != b.fds  # the worker inherits its lease's lock
        info = json.loads(a.env[launch_record.LAUNCH_ENV])
        assert info["gpu"] == "2" and info["gpu_shared"] is False and info["cells_at_once"] == 2
        assert a.env["OMP_NUM_THREADS"] == str(max(1, launch.cores() // 2))
        assert sorted(p.name for p in (tmp_path / "cache" / "gpu-locks" / "h").iterdir()) == ["gpu-2.0.lock", "gpu-3.0.lock"]
    assert try_lease(["2", "3"], tmp_path / "cache" / "gpu-locks" / "h").gpu == "2"  # released with the block


def test_placement_leaves_one_cell_at_a_time_alone(tmp_path):
    with placement(_spec(tmp_path / "a", "cuda:X", {}), environ={}, launcher=Launcher("basic", 1),
                   gpus=lambda: ["0", "1"]) as placed:
        assert set(placed.env) == {launch_record.LAUNCH_ENV} and placed.fds == ()
        assert json.loads(placed.env[launch_record.LAUNCH_ENV])["cells_at_once"] == 1


def test_placement_with_k_cells_per_gpu_flags_them_shared(tmp_path):
    run = {"cache_dir": str(tmp_path), "cells_per_gpu": 2}
    with placement(_spec(tmp_path / "a", "cuda:X", run), environ={}, launcher=Launcher("joblib", 2),
                   gpus=lambda: ["0"], host="h") as placed:
        info = json.loads(placed.env[launch_record.LAUNCH_ENV])
        assert info["gpu"] == "0" and info["gpu_slot"] == 0 and info["gpu_shared"] is True


def test_placement_without_any_gpu_to_hand_out_flags_sharing(tmp_path):
    with placement(_spec(tmp_path / "a", "cuda:X", {"cache_dir": str(tmp_path)}), environ={},
                   launcher=Launcher("joblib", 2), gpus=lambda: []) as placed:
        assert "CUDA_VISIBLE_DEVICES" not in placed.env
        assert json.loads(placed.env[launch_record.LAUNCH_ENV])["gpu_shared"] is True


def test_placement_survives_an_unwritable_lock_folder(tmp_path):
    (tmp_path / "file").write_text("")  # the cache folder is a file: no lock folder can be made under it
    said = []
    with placement(_spec(tmp_path / "a", "cuda:X", {"cache_dir": str(tmp_path / "file")}), said.append, environ={},
                   launcher=Launcher("joblib", 2), gpus=lambda: ["0"]) as placed:
        assert "CUDA_VISIBLE_DEVICES" not in placed.env and placed.fds == ()
        assert json.loads(placed.env[launch_record.LAUNCH_ENV])["gpu_shared"] is True
    assert len(said) == 1 and "cannot hand out a GPU" in said[0]


def test_worker_side_reads_the_block(monkeypatch):
    monkeypatch.setenv(launch_record.LAUNCH_ENV, json.dumps({"launcher": "joblib", "cells_at_once": 2}))
    assert launch_record.from_env(os.environ) == {"launcher": "joblib", "cells_at_once": 2}
    monkeypatch.setenv(launch_record.LAUNCH_ENV, "not json")
    assert launch_record.from_env(os.environ) is None


def test_summary_note_flags_parallel_throughput():
    one = {"environment": {"launch": {"launcher": "basic", "cells_at_once": 1}}}
    two = {"environment": {"launch": {"launcher": "joblib", "cells_at_once": 2, "threads_per_cell": 1}}}
    assert launch_record.concurrency_note([one, {}]) is None
    note = launch_record.concurrency_note([two, two, one])
    assert note.startswith("2 of 3 cells ran up to 2 at once (joblib, 1 thread(s) per cell)")
    assert "tokens_per_s is not a single-cell figure" in note


def test_calibration_leaves_out_cells_that_shared_a_gpu():
    model = {"name": "tiny-llama", "arch": "llama", "tiny": True, "num_layers": 4, "hidden_size": 256, "num_heads": 4,
             "num_kv_heads": 2, "intermediate_size": 512, "vocab_size": 2048}

    def record(i, shared):
        config = {"model": model, "peft": {"method": "lora"}, "lora": {"r": 8}, "quant": {"mode": "none"},
                  "train": {"batch_size": 1 + i, "max_seq_len": 64}}
        return {"cell_id": f"c{i}", "status": "ok", "config": config,
                "environment": {"device": "cuda", "launch": {"gpu_shared": shared}},
                "train": {"max_batch_shape": [1 + i, 64]},
                "memory": {"train_peak": {"counter": "cuda_peak_allocated", "peak_mib": 100.0 + i}}}

    report = calibrate([record(0, False), record(1, True), record(2, False), record(3, True)])
    assert report["cuda_peak_allocated"]["records"] == 2


@pytest.mark.skipif(importlib.util.find_spec("submitit") is None, reason="submitit is not installed (pip install -e '.[scale]')")
def test_slurm_preset_becomes_these_sbatch_lines(tmp_path, monkeypatch):
    """conf/hydra/launcher/slurm.yaml, composed as python -m harness would, through submitit's own sbatch writer
    (a stand-in ``srun`` on PATH: submitit refuses to build a SLURM executor without one)."""
    import submitit
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf

    from harness.config.compose import CONF_DIR, register

    srun = tmp_path / "bin" / "srun"
    srun.parent.mkdir()
    srun.write_text("#!/bin/sh\nexit 0\n")
    srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{srun.parent}{os.pathsep}{os.environ['PATH']}")
    register()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                                                       f"run.root={tmp_path}"], return_hydra_config=True)
    node = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert node["_target_"].endswith("SlurmLauncher") and node["array_parallelism"] == 8
    # as hydra_submitit_launcher's launch() hands the keys to submitit
    params = {k: v for k, v in node.items() if k not in ("_target_", "submitit_folder", "max_num_timeout")}
    params["name"] = "harness"
    executor = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="slurm", slurm_max_num_timeout=0)
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    text = executor._executor._make_submission_file_text("python -m harness.worker", "uid")
    for line in ("--partition=gpu", "--gpus-per-task=1", "--cpus-per-task=8", "--mem=64GB", "--time=120",
                 "--ntasks-per-node=1"):
        assert f"#SBATCH {line}\n" in text, text
    assert executor._executor.parameters["array_parallelism"] == 8
