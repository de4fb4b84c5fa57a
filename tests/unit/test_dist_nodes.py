"""One dist cell across nodes under SLURM (no SLURM here): the sbatch script submitit would submit, the
rendezvous every node derives alike, node 0's files and the follower on the other nodes, a grid that sweeps
the allocation's shape refused before anything is submitted, and a dist cell's GPUs leased together."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from harness.files import read_json, write_json_atomic
from harness.sweep import nodes
from harness.worker import follow
from harness.worker.ranks import RANKS_DIR, rendezvous

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
DIST = {"strategy": "ddp", "processes": 16, "nodes": 2, "port": None}
NODE0 = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "gpu-a[01-02]", "SLURM_NODEID": "0"}
NODE1 = {**NODE0, "SLURM_NODEID": "1"}


def _bin(tmp_path: Path, name: str, body: str) -> Path:
    """A stand-in command on PATH (``srun``, ``scontrol``): SLURM's own are not installed here."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(f"#!/bin/sh\n{body}\n")
    (folder / name).chmod(0o755)
    return folder


def _compose(overrides, root: Path):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from harness.config.compose import CONF_DIR, register

    register()
    nodes.register_resolver()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=[*overrides, f"run.root={root}"], return_hydra_config=True)


class _Submitted(Exception):
    """Raised in place of calling sbatch, carrying the script submitit wrote."""


def sbatch_script(overrides, tmp_path: Path, monkeypatch) -> str:
    """The sbatch script hydra_submitit_launcher would submit for this command line: its own launcher class,
    instantiated from the composed config as Hydra does (every value resolved) and its own ``launch()``, stopped
    where submitit hands the script to sbatch."""
    pytest.importorskip("submitit", reason="submitit is not installed (pip install -e '.[scale]')")
    from hydra.utils import instantiate
    from submitit.slurm import slurm

    from harness.sweep.job import task

    monkeypatch.setenv("PATH", f"{_bin(tmp_path, 'srun', 'exit 0')}{os.pathsep}{os.environ['PATH']}")
    real = slurm.SlurmExecutor._make_submission_file_text

    def captured(self, command, uid):
        raise _Submitted(real(self, command, uid))

    monkeypatch.setattr(slurm.SlurmExecutor, "_make_submission_file_text", captured)
    cfg = _compose(overrides, tmp_path / "runs")
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=task, config=cfg)
    with pytest.raises(_Submitted) as submitted:
        launcher.launch([[]], initial_job_idx=0)
    return str(submitted.value.args[0])


README_COMMAND = ["-m", "model=llama-70b", "dist=fsdp", "dist.nodes=2", "dist.processes=16", "hydra/launcher=slurm",
                  "hydra.launcher.partition=gpu"]
"""README "Across nodes (SLURM)": the 2 x 8 GPUs example (there with run.root=/shared/runs after it)."""


def test_two_nodes_of_8_gpus_become_these_sbatch_lines(tmp_path, monkeypatch):
    text = sbatch_script(README_COMMAND[1:], tmp_path, monkeypatch)
    print(text)  # the README's "Across nodes (SLURM)" shows this script
    for line in ("--nodes=2", "--ntasks-per-node=1", "--gpus-per-node=8", "--partition=gpu", "--cpus-per-task=8",
                 "--mem=64GB", "--time=120"):
        assert f"#SBATCH {line}\n" in text, text
    assert "--gpus-per-task" not in text  # it would bind the node's one task to one GPU
    srun = [line for line in text.splitlines() if line.startswith("srun ")]
    folder = tmp_path / "runs" / "dist.nodes=2__dist.processes=16__dist=fsdp__model=llama-70b" / ".submitit" / "%j"
    assert len(srun) == 1 and srun[0].endswith(f"{sys.executable} -u -m submitit.core._submit {folder}"), srun


def test_one_gpu_cells_keep_one_gpu_per_task(tmp_path, monkeypatch):
    text = sbatch_script(["hydra/launcher=slurm", "hydra.launcher.partition=gpu"], tmp_path, monkeypatch)
    for line in ("--nodes=1", "--ntasks-per-node=1", "--gpus-per-task=1", "--cpus-per-task=8", "--mem=64GB"):
        assert f"#SBATCH {line}\n" in text, text
    assert "--gpus-per-node" not in text


def test_the_readme_command_composes(tmp_path):
    from harness.sweep.preflight import check_command_line

    check_command_line([*README_COMMAND, f"run.root={tmp_path}"], str(REPO / "conf"))
    readme = (REPO / "README.md").read_text().replace("\\\n", " ")
    assert " ".join(["python -m harness", *README_COMMAND]) in " ".join(readme.split())


@pytest.mark.parametrize("dist, overrides, shape", [
    ({"strategy": "none"}, [], {"nodes": 1, "gpus_per_node": None, "gpus_per_task": 1}),
    (DIST, [], {"nodes": 2, "gpus_per_node": 8, "gpus_per_task": None}),
    ({"strategy": "fsdp", "processes": 4, "nodes": 1}, ["model=a,b"], {"nodes": 1, "gpus_per_node": 4, "gpus_per_task": None}),
    # a swept group is not applied to the config Hydra sizes the launcher from: its values decide
    ({"strategy": "none", "processes": 16, "nodes": 2}, ["dist=ddp,fsdp"], {"nodes": 2, "gpus_per_node": 8, "gpus_per_task": None}),
    (DIST, ["dist.nodes=2,2"], {"nodes": 2, "gpus_per_node": 8, "gpus_per_task": None}),  # one value is no sweep
])
def test_the_allocation_follows_the_dist_block(dist, overrides, shape):
    assert nodes.allocation(dist, overrides) == shape


@pytest.mark.parametrize("overrides, named", [
    (["dist.nodes=1,2"], "dist.nodes=1,2"), (["+dist.processes=8,16"], "+dist.processes=8,16"),
    (["dist.processes=range(8,17,8)"], "dist.processes=range(8,17,8)"), (["dist=none,ddp"], "dist=none,ddp"),
    (["dist.strategy=glob(*)"], "dist.strategy=glob(*)"),
])
def test_a_slurm_grid_that_sweeps_the_shape_is_refused_naming_the_key(overrides, named):
    from harness.errors import ConfigError

    with pytest.raises(ConfigError) as exc:
        nodes.allocation(DIST, overrides)
    assert str(exc.value).startswith(f"{named}: hydra/launcher=slurm sizes one allocation per grid") and "\n" not in str(exc.value)


def test_sweeping_dist_nodes_under_slurm_fails_in_one_line_and_submits_nothing(tmp_path):
    env = {**os.environ, "PATH": f"{_bin(tmp_path, 'sbatch', 'echo sbatch was called >&2; exit 1')}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run([sys.executable, "-m", "harness", "-m", "dist=ddp", "dist.nodes=1,2", "dist.processes=2",
                          "hydra/launcher=slurm", f"run.root={tmp_path / 'runs'}"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert out.stderr.splitlines() == [
        "error: dist.nodes=1,2: hydra/launcher=slurm sizes one allocation per grid from dist.nodes and dist.processes, "
        "so a SLURM grid cannot sweep them; run one command per value"], out.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_named_sweeps_grid_is_checked_too(capsys):
    from omegaconf import OmegaConf

    # as the resolver reads it: the primary config, with a named sweep's hydra.sweeper.params
    root = OmegaConf.create({"dist": DIST, "hydra": {"overrides": {"task": []}, "sweeper": {"params": {"dist.nodes": "1,2"}}}})
    with pytest.raises(SystemExit) as exc:
        nodes._resolve("nodes", root)
    assert exc.value.code == 2 and capsys.readouterr().err.startswith("error: dist.nodes=1,2: hydra/launcher=slurm")
    assert nodes._resolve("gpus_per_node", OmegaConf.create({"dist": DIST, "hydra": {"overrides": {"task": []}}})) == 8
    with pytest.raises(SystemExit):  # a strategy with no rank count: SLURM would be asked for no GPU at all
        nodes._resolve("gpus_per_node", OmegaConf.create({"dist": {**DIST, "processes": None}, "hydra": {}}))
    assert capsys.readouterr().err.startswith("error: dist.processes=null: hydra/launcher=slurm sizes the allocation")


@pytest.mark.parametrize("env, said", [
    ({}, "dist.nodes=2: a cell across nodes runs as a SLURM job, one task per node: add -m and hydra/launcher=slurm"),
    ({**NODE0, "SLURM_JOB_NUM_NODES": "1", "SLURM_NTASKS": "1"}, "dist.nodes=2: this SLURM job has 1 node(s) and 1 task(s)"),
    ({**NODE0, "SLURM_JOB_NUM_NODES": "2", "SLURM_NTASKS": "16"}, "dist.nodes=2: this SLURM job has 2 node(s) and 16 task(s)"),
    ({**NODE0, "SLURM_JOB_NUM_NODES": "2", "SLURM_NTASKS": "2"}, None),
])
def test_node_0_refuses_a_job_its_ranks_would_wait_in_forever(env, said):
    found = nodes.problem({"dist": DIST}, env)
    assert found == said if said is None else found.startswith(said)
    assert nodes.problem({"dist": {"strategy": "ddp", "processes": 2, "nodes": 1}}, {}) is None


def test_every_node_derives_the_same_rendezvous_from_slurm(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{_bin(tmp_path, 'scontrol', 'echo gpu-a01; echo gpu-a02')}{os.pathsep}{os.environ['PATH']}")
    first, second = rendezvous(DIST, NODE0), rendezvous(DIST, NODE1)
    assert (first["host"], first["port"], first["nodes"]) == (second["host"], second["port"], second["nodes"]) == ("gpu-a01", 24242, 2)
    assert (first["machine_rank"], second["machine_rank"]) == (0, 1)
    assert rendezvous({**DIST, "port": 29500}, NODE1)["port"] == 29500


def _cell(tmp_path: Path, attempt: str = "a1") -> Path:
    cell = tmp_path / "cell"
    (cell / RANKS_DIR).mkdir(parents=True)
    write_json_atomic(cell / "cell.json", {"cell_id": "c", "attempt": attempt, "train": True, "evals": {},
                                           "config": {"dist": DIST}})
    return cell


def _fake_launcher(monkeypatch) -> list:
    """accelerate's launch_command, recorded instead of run (and without importing torch)."""
    launched: list = []
    fake = types.ModuleType("accelerate.commands.launch")
    fake.launch_command_parser = lambda: types.SimpleNamespace(parse_args=lambda args: args)
    fake.launch_command = launched.append
    errors = types.ModuleType("torch.distributed.elastic.multiprocessing.errors")
    errors.ChildFailedError = type("ChildFailedError", (Exception,), {})
    monkeypatch.setitem(sys.modules, "accelerate.commands.launch", fake)
    monkeypatch.setitem(sys.modules, "torch.distributed.elastic.multiprocessing.errors", errors)
    return launched


def test_the_follower_launches_node_1_from_node_0s_rendezvous(tmp_path, monkeypatch):
    from harness.worker.ranks import AGENT_ENV, train_ranks

    monkeypatch.setenv(AGENT_ENV, "0")  # both set it for their ranks; restored after the test
    monkeypatch.setenv("PATH", f"{_bin(tmp_path, 'scontrol', 'echo gpu-a01; echo gpu-a02')}{os.pathsep}{os.environ['PATH']}")
    cell = _cell(tmp_path)
    launched = _fake_launcher(monkeypatch)
    train_ranks(read_json(cell / "cell.json"), cell, dict(NODE0))  # node 0's worker: writes the rendezvous, launches
    assert read_json(cell / RANKS_DIR / follow.RENDEZVOUS_NAME) == {
        "job": "4242", "restart": 0, "attempt": "a1", "host": "gpu-a01", "port": 24242, "nodes": 2}
    started: list = []
    assert follow.main(["follow", str(cell), "--wait-s", "1"], NODE1, start=lambda args: started.append(args) or 0) == 0
    (node0,), (node1,) = launched, started
    assert node1[node1.index("--machine_rank") + 1] == "1" and node0[node0.index("--machine_rank") + 1] == "0"
    for flag in ("--num_processes", "--num_machines", "--main_process_ip", "--main_process_port"):
        assert node1[node1.index(flag) + 1] == node0[node0.index(flag) + 1]
    assert node1[node1.index("--num_processes") + 1] == "16" and node1[-2:] == ["harness.worker.rank", str(cell)]


def test_the_follower_stops_on_node_0s_done_marker(tmp_path):
    cell = _cell(tmp_path)
    nodes.settle({"dist": DIST}, cell, NODE1)  # another node writes nothing
    assert not (cell / RANKS_DIR / nodes.DONE_NAME).exists()
    nodes.settle({"dist": DIST}, cell, NODE0)
    assert read_json(cell / RANKS_DIR / follow.DONE_NAME) == {"job": "4242", "restart": 0, "done": True}
    out = subprocess.run([sys.executable, "-m", "harness.worker.follow", str(cell), "--wait-s", "30"], cwd=REPO,
                         env={**os.environ, **NODE1}, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "nothing to do" in out.stdout, out


def test_the_follower_times_out_in_one_line_and_ignores_another_jobs_files(tmp_path):
    cell = _cell(tmp_path)
    write_json_atomic(cell / RANKS_DIR / follow.RENDEZVOUS_NAME, {"job": "4141", "restart": 0, "attempt": "a1",
                                                                  "host": "h", "port": 1, "nodes": 2})
    write_json_atomic(cell / RANKS_DIR / follow.DONE_NAME, {"job": "4242", "restart": 1, "done": True})  # before a requeue
    out = subprocess.run([sys.executable, "-m", "harness.worker.follow", str(cell), "--wait-s", "0.5"], cwd=REPO,
                         env={**os.environ, **NODE1}, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out
    (line,) = out.stdout.splitlines()
    assert line.startswith(f"node 1: error: no rendezvous from node 0 of SLURM job 4242 in {cell / RANKS_DIR} after 0.5 s")


def test_a_follower_waits_for_the_spec_of_the_rendezvous_attempt(tmp_path):
    cell = _cell(tmp_path, attempt="old")
    write_json_atomic(cell / RANKS_DIR / follow.RENDEZVOUS_NAME, {"job": "4242", "restart": 0, "attempt": "new",
                                                                  "host": "h", "port": 1, "nodes": 2})
    clock = iter(range(100))

    def sleep(_):
        write_json_atomic(cell / "cell.json", {"attempt": "new", "config": {"dist": DIST}})

    meet = follow.wait_for_node0(cell, follow.slurm_job(NODE1), 10, clock=lambda: next(clock), sleep=sleep)
    assert meet["spec"]["attempt"] == "new" and meet["host"] == "h"


def _job_for(monkeypatch, tmp_path: Path, env: dict):
    from harness.sweep import job as job_mod

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    sweep = tmp_path / "runs" / "s"
    sweep.mkdir(parents=True)
    monkeypatch.setattr(job_mod, "_job", lambda: job_mod.Job(sweep, "0", [], True))
    cfg = _compose(["dist=ddp", "dist.nodes=2", "dist.processes=4", "run.device=cpu"], tmp_path / "runs")
    from omegaconf import open_dict

    with open_dict(cfg):
        del cfg["hydra"]
    return job_mod, cfg, sweep


def test_a_node_above_0_follows_without_the_lock_or_a_record(tmp_path, monkeypatch):
    job_mod, cfg, sweep = _job_for(monkeypatch, tmp_path, NODE1)
    followed = []
    monkeypatch.setattr(nodes, "follow", lambda plan, timeout_s, say: followed.append((plan.cell_dir, timeout_s)) or 0)
    job_mod.task(cfg)
    ((cell_dir, timeout_s),) = followed
    assert timeout_s == 3600 and not cell_dir.exists()  # no lock, no spec, no record, no done marker
    assert not (sweep / "manifest.json").exists()


def test_node_0_writes_the_done_marker_whatever_happened(tmp_path, monkeypatch):
    from harness.sweep import cell as cell_mod

    job_mod, cfg, _ = _job_for(monkeypatch, tmp_path, NODE0)

    def boom(plan, **_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cell_mod, "run_cell", boom)
    job_mod.task(cfg)
    (done,) = (tmp_path / "runs" / "cells").rglob(nodes.DONE_NAME)
    assert json.loads(done.read_text()) == {"job": "4242", "restart": 0, "done": True}


def test_the_parent_and_the_follower_name_node_0s_files_alike():
    from harness.worker import ranks

    assert (nodes.DONE_NAME, nodes.RANKS_DIR) == (follow.DONE_NAME, ranks.RANKS_DIR)
    assert nodes.slurm_job({**NODE0, "SLURM_RESTART_COUNT": "2"}) == follow.slurm_job({**NODE0, "SLURM_RESTART_COUNT": "2"})


def test_the_job_waits_for_its_follower_and_never_writes_a_record(tmp_path):
    cell = _cell(tmp_path)
    nodes.settle({"dist": DIST}, cell, NODE0)
    plan = types.SimpleNamespace(cell_id="c", cell_dir=cell, config={"dist": DIST, "framework": {"name": "hf"}})
    said: list = []
    assert nodes.follow(plan, 30, said.append, python=Path(sys.executable), environ={**os.environ, **NODE1}) == 0
    assert "node 1 of 2: following node 0 (SLURM job 4242)" in said[0]
    assert sorted(p.name for p in cell.rglob("*") if p.is_file()) == ["cell.json", nodes.DONE_NAME]


def test_dist_cells_lease_their_gpus_together_and_apart(tmp_path):
    from harness.store.launch import LAUNCH_ENV
    from harness.sweep.launch import Launcher, placement, try_leases

    def spec(name: str, dist: dict) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        write_json_atomic(folder / "cell.json", {"identity": {"device": "cuda:X"},
                                                 "config": {"run": {"cache_dir": str(tmp_path / "cache")}, "dist": dist}})
        return folder

    joblib, four = Launcher("joblib", 2, {"n_jobs": 2}), lambda: ["0", "1", "2", "3"]
    two = {"strategy": "ddp", "processes": 2, "nodes": 1}
    with placement(spec("a", two), environ={}, launcher=joblib, gpus=four, host="h") as a, \
            placement(spec("b", two), environ={}, launcher=joblib, gpus=four, host="h") as b:
        assert (a.env["CUDA_VISIBLE_DEVICES"], b.env["CUDA_VISIBLE_DEVICES"]) == ("0,1", "2,3")
        assert len(a.fds) == 2 and json.loads(a.env[LAUNCH_ENV])["gpu"] == "0,1"
        assert try_leases(four(), tmp_path / "cache" / "gpu-locks" / "h", 1) is None  # a third cell waits
    said: list = []
    with placement(spec("c", {**two, "processes": 8}), said.append, environ={}, launcher=joblib, gpus=four, host="h") as c:
        assert "CUDA_VISIBLE_DEVICES" not in c.env and "needs 8 GPUs on this node and 4 are visible" in said[0]
    with placement(spec("d", two), environ={}, launcher=Launcher("submitit_slurm", 1), gpus=four, host="h") as d:
        assert "CUDA_VISIBLE_DEVICES" not in d.env and d.fds == ()  # its own allocation: it keeps every GPU SLURM gave it


def test_a_slurm_cells_record_names_the_allocation_the_preset_resolved(tmp_path):
    from harness.store.launch import LAUNCH_ENV
    from harness.sweep.launch import launcher_of, placement

    node = {"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher", "array_parallelism": 8,
            **{key: f"${{harness_slurm:{key}}}" for key in nodes.ALLOCATION_KEYS}}  # as the job reads it, unresolved
    for dist, shape in (({"strategy": "none"}, {"nodes": 1, "gpus_per_task": 1}), (DIST, {"nodes": 2, "gpus_per_node": 8})):
        folder = tmp_path / dist["strategy"]
        folder.mkdir()
        write_json_atomic(folder / "cell.json", {"identity": {"device": "cuda:X"}, "config": {"run": {}, "dist": dist}})
        with placement(folder, environ={}, launcher=launcher_of(node, 4, 8), gpus=lambda: ["0"]) as placed:
            info = json.loads(placed.env[LAUNCH_ENV])
        assert {key: info.get(key) for key in shape} == shape and info["array_parallelism"] == 8
        assert not any(str(value).startswith("${") for value in info.values())
