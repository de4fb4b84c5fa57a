"""dist: its config, its identity, what the parent refuses, and how ranks' counters and failures become the record."""

from __future__ import annotations

import copy
import os
import signal
from types import SimpleNamespace

import pytest

from harness.config.dist import DistConfig
from harness.errors import ConfigError, UnsupportedError
from harness.files import write_json_atomic
from harness.measure.ranks import combine, rank_measurement
from harness.worker.ranks import launch_args, rank_failure, rendezvous

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("kwargs, key", [
    ({"strategy": "zero"}, "dist.strategy"),
    ({"strategy": "ddp", "processes": 0}, "dist.processes"),
    ({"strategy": "ddp", "processes": 3, "nodes": 2}, "dist.processes"),
    ({"nodes": 2}, "dist.nodes"),
    ({"strategy": "deepspeed", "zero_stage": 1}, "dist.zero_stage"),
    ({"strategy": "fsdp", "port": 80}, "dist.port"),
])
def test_bad_dist_values_name_their_key(kwargs, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        DistConfig(**kwargs)


def _config(**dist):
    from omegaconf import OmegaConf

    from harness.config.schema import HarnessConfig

    plain = OmegaConf.to_container(OmegaConf.structured(HarnessConfig), resolve=False)
    plain["run"] = {**plain["run"], "device": "cpu", "cache_dir": "/tmp/unused"}
    plain["dist"].update(dist)
    return plain


def test_a_one_process_cell_keeps_its_id_and_a_dist_cell_names_strategy_and_ranks():
    from harness.store.identity import cell_id, cell_identity

    def ident(config):
        return cell_id(config, cell_identity(config))

    plain = ident(_config())
    assert ident(_config(processes=2)) == plain  # dist keys of a one-process cell change nothing
    ddp = ident(_config(strategy="ddp", processes=2))
    assert "-hf-ddp2-" in ddp and ddp != plain
    assert ident(_config(strategy="ddp", processes=2, port=29999)) == ddp  # where ranks meet is not what they train
    assert ident(_config(strategy="ddp", processes=4)) != ddp
    assert ident(_config(strategy="fsdp", processes=2)) != ident(_config(strategy="fsdp", processes=2, cpu_offload=True))


def test_processes_default_to_the_visible_gpus_and_a_cpu_cell_must_name_them(monkeypatch):
    from harness.store import identity
    from harness.sweep import dist

    with pytest.raises(ConfigError, match="dist.processes"):
        dist.resolve(_config(strategy="ddp"), "cpu")
    identity.visible_gpu_count.cache_clear()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    try:
        assert dist.resolve(_config(strategy="fsdp", nodes=2), "cuda:NVIDIA H100")["dist"]["processes"] == 8
    finally:
        identity.visible_gpu_count.cache_clear()
    assert dist.resolve(_config(strategy="ddp", processes=3), "cpu")["dist"]["processes"] == 3


def test_what_this_machine_cannot_run_is_said_before_a_worker_starts(monkeypatch):
    from harness.sweep import dist

    assert "accelerate enables FSDP only on GPUs" in dist.problem(_config(strategy="fsdp", processes=2), "cpu")
    assert dist.problem(_config(strategy="ddp", processes=2), "cpu") is None
    capped = _config(strategy="ddp", processes=2)
    capped["run"]["memory_cap_gib"] = 1.0
    assert "not with dist" in dist.problem(capped, "cpu") and "not with dist" in dist.problem(capped, "cuda:x")
    monkeypatch.setattr(dist, "visible_gpu_count", lambda: 4)
    assert "8 ranks per node but 4 GPU(s)" in dist.problem(_config(strategy="ddp", processes=8), "cuda:x")
    assert dist.problem(_config(strategy="ddp", processes=8, nodes=2), "cuda:x") is None
    monkeypatch.setattr(dist.importlib.util, "find_spec", lambda name: None)
    assert "pip install deepspeed" in dist.problem(_config(strategy="deepspeed", processes=2), "cuda:x")
    assert dist.worker_mode(_config(strategy="ddp", processes=2), "warm") == "spawn"
    assert dist.worker_mode(_config(), "warm") == "warm"


def _rank(rank, peak, tokens_per_s, energy=10.0):
    memory = {"after_load": {"cuda_allocated_mib": 100.0 + rank},
              "train_peak": {"peak_mib": peak, "counter": "cuda_peak_allocated", "cuda_peak_reserved_mib": peak + 50}}
    train = {"tokens_per_s": tokens_per_s, "all_tokens_per_s": 2 * tokens_per_s, "samples_per_s": 1.0, "trained_tokens": 100,
             "all_tokens": 200, "samples": 8, "tokens_per_s_p50": tokens_per_s, "step_times_s": [0.1, 0.1]}
    nvml = {"energy_j": energy, "nvml_process_peak_mib": peak + 300, "nvml_device_peak_mib": peak + 400, "absent": {}}
    return rank_measurement(rank, rank, "node0", memory, train, nvml)


def test_the_cell_memory_is_the_largest_rank_and_throughput_is_summed():
    record = {"memory": {}, "train": {"tokens_per_s_p50": 5.0}}
    nvml = combine(record, [_rank(1, 900.0, 30.0), _rank(0, 700.0, 10.0, energy=None)])
    memory, train = record["memory"], record["train"]
    assert [entry["rank"] for entry in memory["per_rank"]] == [0, 1]
    assert memory["train_peak"]["peak_mib"] == 900.0 and memory["train_peak"]["rank"] == 1
    assert memory["rank_spread_mib"] == 200.0 and memory["rank_peak_min_mib"] == 700.0
    assert train["tokens_per_s"] == 40.0 and train["tokens_per_s_per_gpu"] == 20.0 and train["ranks"] == 2
    assert train["samples"] == 16 and train["trained_tokens"] == 200
    assert train["tokens_per_s_p50"] is None and "per_rank" in train["spread_note"]  # no sum of quartiles
    assert nvml["energy_j"] is None and "some ranks" in nvml["absent"]["energy"]  # no sum over part of the devices
    assert nvml["nvml_process_peak_mib"] == 1200.0
    both = combine({"memory": {}, "train": {}}, [_rank(0, 700.0, 10.0), _rank(1, 900.0, 30.0)])
    assert both["energy_j"] == 20.0


def test_mfu_and_price_count_every_rank():
    from harness.config.hardware import Hardware
    from harness.measure.efficiency import _mfu, _money

    fields = Hardware.__dataclass_fields__
    base = {"name": "h100", "label": "H100", "kind": "gpu", "memory_gib": 80.0, "bf16_tflops": 1000.0,
            "price_usd_per_h": 2.0, "tdp_w": 700.0, "match": ["H100"]}
    hw = Hardware(**{key: value for key, value in base.items() if key in fields},
                  **{key: None for key in fields if key not in base})
    assert _mfu(400.0, hw, {}, devices=1)["mfu"] == pytest.approx(0.4)
    assert _mfu(400.0, hw, {}, devices=4)["mfu"] == pytest.approx(0.1)
    assert _money(hw, 3600.0, 100.0, {}, devices=4)["train_cost_usd"] == pytest.approx(8.0)


def test_the_rank_that_ended_the_cell_is_named(tmp_path):
    (tmp_path / "ranks").mkdir()
    crashed = rank_failure(tmp_path, {0: -signal.SIGTERM, 1: -signal.SIGKILL})
    assert crashed.status == "crashed" and str(crashed).startswith("rank 1 was killed by SIGKILL")
    write_json_atomic(tmp_path / "ranks" / "rank0.json", {"rank": 0, "status": "oom", "error": "CUDA out of memory. Tried"})
    oom = rank_failure(tmp_path, {0: 1, 1: -signal.SIGTERM})
    assert oom.status == "oom" and str(oom) == "rank 0: CUDA out of memory. Tried"
    write_json_atomic(tmp_path / "ranks" / "rank0.json", {"rank": 0, "status": "failed", "error": "ValueError: x"})
    assert (rank_failure(tmp_path, {0: 1}).status, str(rank_failure(tmp_path, {0: 1}))) == ("failed", "rank 0: ValueError: x")
    (tmp_path / "ranks" / "rank0.json").unlink()
    assert rank_failure(tmp_path, {1: 3}).status == "crashed"  # exited without a word
    killed = rank_failure(tmp_path, {1: -signal.SIGKILL}, oom_killed=True)
    assert killed.status == "oom" and "OOM killer" in str(killed)
    # a rank of another node (not in this node's torchrun failures) that ran out of memory names the cell's status;
    # a file of an earlier attempt does not
    write_json_atomic(tmp_path / "ranks" / "rank9.json", {"rank": 9, "attempt": "a2", "status": "oom", "error": "CUDA out of memory."})
    assert str(rank_failure(tmp_path, {}, attempt="a2")) == "rank 9: CUDA out of memory."
    assert rank_failure(tmp_path, {}, attempt="a3").status == "crashed"


def test_one_node_meets_on_localhost_and_launches_every_rank(tmp_path):
    meet = rendezvous({"nodes": 1, "port": 29555})
    assert meet == {"host": "127.0.0.1", "port": 29555, "machine_rank": 0, "nodes": 1}
    assert rendezvous({"nodes": 1})["port"] > 0
    args = launch_args({"processes": 2}, meet, tmp_path)
    assert args[:3] == ["--multi_gpu", "--num_processes", "2"]
    assert args[-3:] == ["--module", "harness.worker.rank", str(tmp_path)]
    with pytest.raises(ConfigError, match="dist.nodes=2"):
        rendezvous({"nodes": 2}, environ={})


def _hf_cfg(**dist):
    from harness.config.schema import HarnessConfig

    cfg = HarnessConfig()
    cfg.dist = DistConfig(**{"processes": 2, **dist})
    return cfg


def test_fsdp_and_zero_become_the_trainer_arguments_accelerate_reads():
    from harness.backends.dist import deepspeed_config, trainer_args, wrapped_layers

    assert trainer_args(_hf_cfg(strategy="none")) == {}
    fsdp = trainer_args(_hf_cfg(strategy="fsdp", cpu_offload=True, activation_checkpointing=True))
    assert fsdp["fsdp"] is True
    assert fsdp["fsdp_config"] == {"version": 2, "auto_wrap_policy": "TRANSFORMER_BASED_WRAP", "reshard_after_forward": True,
                                   "cpu_offload": True, "activation_checkpointing": True, "state_dict_type": "FULL_STATE_DICT",
                                   "cpu_ram_efficient_loading": True}
    assert trainer_args(_hf_cfg(strategy="fsdp"), quantized=True)["fsdp_config"]["cpu_ram_efficient_loading"] is False
    zero3 = deepspeed_config(DistConfig(strategy="deepspeed", zero_stage=3, cpu_offload=True))["zero_optimization"]
    assert zero3["stage"] == 3 and zero3["offload_param"]["device"] == "cpu" and zero3["offload_optimizer"]["device"] == "cpu"
    zero2 = deepspeed_config(DistConfig(strategy="deepspeed", zero_stage=2, cpu_offload=True))["zero_optimization"]
    assert "offload_param" not in zero2 and zero2["offload_optimizer"]["device"] == "cpu"
    assert deepspeed_config(DistConfig(strategy="deepspeed"))["zero_force_ds_cpu_optimizer"] is False  # the Trainer's AdamW
    assert wrapped_layers(SimpleNamespace(_no_split_modules=["LlamaDecoderLayer"])) == ["LlamaDecoderLayer"]


def test_a_strategy_accelerate_did_not_set_up_is_unsupported_not_recorded():
    from harness.backends.dist import check_strategy

    def trainer(kind, processes=2):
        return SimpleNamespace(accelerator=SimpleNamespace(distributed_type=SimpleNamespace(name=kind),
                                                           num_processes=processes, device=SimpleNamespace(type="cpu")))

    assert check_strategy(_hf_cfg(strategy="ddp"), trainer("MULTI_CPU")) == {"distributed_type": "MULTI_CPU", "processes": 2}
    with pytest.raises(UnsupportedError, match="accelerate set up MULTI_CPU on cpu, not fsdp"):
        check_strategy(_hf_cfg(strategy="fsdp"), trainer("MULTI_CPU"))
    with pytest.raises(UnsupportedError, match="dist.processes=2"):
        check_strategy(_hf_cfg(strategy="ddp"), trainer("MULTI_GPU", processes=1))


def test_two_ways_of_recomputing_activations_are_refused():
    from omegaconf import OmegaConf

    from harness.config.schema import HarnessConfig

    merged = OmegaConf.merge(OmegaConf.structured(HarnessConfig), {"dist": {"strategy": "fsdp", "processes": 2,
                                                                             "activation_checkpointing": True},
                                                                    "train": {"gradient_checkpointing": True}})
    with pytest.raises(ConfigError, match="dist.activation_checkpointing"):
        OmegaConf.to_object(merged)


def test_a_framework_with_its_own_process_cannot_take_ranks():
    from omegaconf import OmegaConf

    from harness.config.schema import HarnessConfig

    merged = OmegaConf.merge(OmegaConf.structured(HarnessConfig), {"dist": {"strategy": "ddp", "processes": 2},
                                                                    "framework": {"name": "unsloth", "env": ".venvs/unsloth"}})
    with pytest.raises(ConfigError, match="several ranks need framework=hf"):
        OmegaConf.to_object(copy.deepcopy(merged))
    assert os.environ.get("ACCELERATE_USE_FSDP") is None


def test_gpus_is_a_column_and_an_axis_and_a_one_process_cell_has_one():
    from harness.report.rows import summary_row, varied_axes

    none, ddp = _config(processes=2), _config(strategy="ddp", processes=2)
    assert varied_axes([none, ddp]) == ["dist.strategy", "gpus"]
    assert varied_axes([none, _config(processes=4)]) == []  # dist.processes of a one-process cell changes nothing
    assert summary_row({"config": none, "train": {}})["gpus"] == 1
    assert summary_row({"config": ddp, "train": {"ranks": 2}})["gpus"] == 2
    assert summary_row({"config": ddp, "status": "unsupported"})["gpus"] == 2


def test_an_evaluation_that_cannot_start_after_the_ranks_keeps_the_training_ok(tmp_path, monkeypatch):
    import harness.worker.__main__ as worker
    from harness.files import read_json
    from harness.store.records import CELL_SPEC_NAME, RECORD_NAME
    from harness.worker.phases import EvaluationUnstarted

    spec = {"cell_id": "c", "identity": {}, "config": _config(strategy="ddp", processes=2), "attempt": "a1", "train": True,
            "evals": {"perplexity": "perplexity-k"}}
    write_json_atomic(tmp_path / CELL_SPEC_NAME, spec)

    def trained_then_unloadable(spec, cell_dir, record, timings, progress=None):
        record.update(status="ok", error=None, train={"ranks": 2})  # what rank 0 wrote
        raise EvaluationUnstarted(MemoryError("CUDA out of memory on one device")) from MemoryError("x")

    monkeypatch.setattr(worker, "die_with_parent", lambda *a: None)
    monkeypatch.setattr(worker, "work", trained_then_unloadable)
    assert worker.main(["worker", str(tmp_path)]) == 0
    record = read_json(tmp_path / RECORD_NAME)
    assert record["status"] == "ok" and record["train"]["ranks"] == 2
    result = read_json(tmp_path / "evals" / "perplexity-k" / "result.json")
    assert result["status"] == "oom" and result["attempt"] == "a1"
