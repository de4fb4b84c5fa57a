"""Per-GPU planning of dist cells: terms split by strategy and k, offload, communication, the GPU table's smallest k,
and the published multi-GPU anchors' errors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from harness.config.hardware import load_catalogue
from harness.config.model import ModelConfig
from harness.config.peft import LoraConfig, PeftConfig, QuantConfig
from harness.config.train import TrainConfig
from harness.plan.__main__ import main
from harness.plan.anchors import DIST_ANCHORS, FIT_CLAIMS, dist_table, evaluate_claim, evaluate_dist
from harness.plan.dist import (
    K_CHOICES,
    DistSetting,
    comm_bytes,
    comm_seconds,
    link,
    predict_dist,
    rank_terms,
)
from harness.plan.estimate import gpu_table
from harness.plan.memory import predict
from harness.plan.params import adapter_params, count_params
from harness.plan.setting import MIB, Cell, resolve
from harness.plan.terms import quantized_parts, term_bytes

pytestmark = pytest.mark.unit
CONF = Path(__file__).resolve().parents[2] / "conf" / "model"
STATES = ("weights", "adapter", "gradients", "optimizer")


def _cell(model="llama-70b", method="lora", quant="none", **train):
    m = ModelConfig(**yaml.safe_load((CONF / f"{model}.yaml").read_text()))
    base = {"batch_size": 2, "max_seq_len": 2048, "gradient_checkpointing": True}
    base.update(train)
    return Cell(m, PeftConfig(method=method), LoraConfig(r=16), QuantConfig(mode=quant), TrainConfig(**base))


def _rows(p):
    return {name: mib * MIB for name, mib in p.components.items()}


@pytest.mark.parametrize("method,quant", [("lora", "none"), ("lora", "4bit"), ("full", "none")])
def test_fsdp_shards_weights_gradients_and_optimizer_by_k(method, quant):
    cell = _cell(method=method, quant=quant)
    single = term_bytes(resolve(cell))
    constants = quantized_parts(cell)[1]  # absmax: module metadata, whole on every rank
    for k in (2, 4, 8):
        rows = _rows(predict_dist(cell, DistSetting("fsdp", k)))
        x = resolve(cell)
        # accelerate's FSDP prepare upcasts a full fine-tune's (trainable) weights to fp32: their states follow
        wide = 4 / x.e if method == "full" and x.e < 4 else 1.0
        base = (count_params(cell.model).total * x.e * wide if quant == "none"
                else quantized_parts(cell)[0] + quantized_parts(cell)[2] * x.e)  # packed data + rest in compute dtype
        assert rows["weights"] == pytest.approx(base / k + constants)
        assert rows["optimizer"] == pytest.approx(single.optimizer * wide / k)
        assert rows["adapter"] == pytest.approx(single.adapter / k)
    totals = [predict_dist(cell, DistSetting("fsdp", k)).total_mib for k in (2, 4, 8, 16)]
    assert totals == sorted(totals, reverse=True) and totals[0] > totals[-1]


def test_activations_are_one_gpus_micro_batch_whatever_k():
    cell = _cell()
    single = predict(cell).components["activations"]
    for strategy in ("ddp", "fsdp", "deepspeed"):
        for k in (2, 8):
            assert predict_dist(cell, DistSetting(strategy, k)).components["activations"] == pytest.approx(single)


def test_ddp_replicates_everything_and_keeps_a_bucket_copy_of_the_gradients():
    cell = _cell("llama", quant="4bit")
    single = predict(cell).components
    for k in (2, 4, 8):
        rows = predict_dist(cell, DistSetting("ddp", k)).components
        for name in STATES:
            assert rows[name] == pytest.approx(single[name])
        assert rows["buckets"] == pytest.approx(single["gradients"])  # gradient_as_bucket_view=False: a full copy
        assert "gathered" not in rows


def test_zero2_replicates_weights_zero3_shards_them_both_shard_gradients_and_states():
    cell = _cell("llama", method="full")
    x = resolve(cell)
    n = count_params(cell.model).total
    two = _rows(predict_dist(cell, DistSetting("deepspeed", 4, zero_stage=2)))
    three = _rows(predict_dist(cell, DistSetting("deepspeed", 4, zero_stage=3)))
    assert two["weights"] == pytest.approx(n * x.e)
    assert three["weights"] == pytest.approx(n * x.e / 4)
    for rows in (two, three):  # ZeRO mixed precision: fp32 master + two fp32 Adam states = 12 B per parameter
        assert rows["optimizer"] == pytest.approx(n * 12 / 4)
    assert "gathered" in three and "gathered" not in two
    assert three["buckets"] < two["buckets"]  # ZeRO-2's overlap_comm holds 4.5 x both buckets


@pytest.mark.parametrize("strategy,stage", [("fsdp", 3), ("deepspeed", 3), ("deepspeed", 2)])
def test_cpu_offload_moves_the_sharded_states_off_the_gpu(strategy, stage):
    cell = _cell(quant="4bit" if strategy == "fsdp" else "none")
    on = predict_dist(cell, DistSetting(strategy, 4, zero_stage=stage))
    off = predict_dist(cell, DistSetting(strategy, 4, zero_stage=stage, cpu_offload=True))
    moved = off.dist["offloaded_mib"]
    kept, _, _, _, _ = rank_terms(resolve(cell), DistSetting(strategy, 4, zero_stage=stage))  # the same rank, on the GPU
    assert off.total_mib < on.total_mib
    assert {"optimizer", "gradients"} <= set(moved)
    for name in moved:
        assert "CPU" in off.dist["how"][name]
        if name != "weights":
            assert off.components[name] == 0.0 and moved[name] * MIB == pytest.approx(getattr(kept, name))
    if strategy == "fsdp":  # the 4-bit data goes; the absmax constants (whole on every rank) stay
        assert off.components["weights"] * MIB == pytest.approx(quantized_parts(cell)[1])
    if stage == 2:  # ZeRO-2 never shards the weights, and offload does not move them
        assert "weights" not in moved and off.components["weights"] == pytest.approx(on.components["weights"])


def test_rows_add_up_to_the_total_per_gpu():
    for strategy, kw in (("ddp", {}), ("fsdp", {}), ("fsdp", {"cpu_offload": True}), ("deepspeed", {"zero_stage": 2})):
        p = predict_dist(_cell(quant="4bit"), DistSetting(strategy, 4, **kw))
        assert sum(p.components.values()) == pytest.approx(p.total_mib)


def test_fsdp_activation_checkpointing_recomputes_like_gradient_checkpointing():
    cell = _cell(gradient_checkpointing=False)
    plain = predict_dist(cell, DistSetting("fsdp", 4))
    ckpt = predict_dist(cell, DistSetting("fsdp", 4, activation_checkpointing=True))
    assert ckpt.components["activations"] < plain.components["activations"]
    assert ckpt.total_mib == pytest.approx(predict_dist(_cell(), DistSetting("fsdp", 4)).total_mib)


@pytest.mark.parametrize("k", [2, 4, 8])
def test_communication_bytes_follow_the_ring_formulas(k):
    f = (k - 1) / k
    lora, full = _cell("llama"), _cell("llama", method="full")
    n_adapter = adapter_params(lora.model,
                               ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], 16, False)
    total = count_params(full.model).total
    ddp = comm_bytes(resolve(lora), DistSetting("ddp", k))
    assert ddp == {"all-reduce gradients": pytest.approx(2 * f * n_adapter * 4)}  # fp32 adapter gradients
    fsdp_full = comm_bytes(resolve(full), DistSetting("fsdp", k))
    assert sum(fsdp_full.values()) == pytest.approx(3 * f * total * 2)  # all-gather x2 + reduce-scatter, bf16
    fsdp_lora = comm_bytes(resolve(lora), DistSetting("fsdp", k))
    assert fsdp_lora["all-gather parameters (forward + backward)"] == pytest.approx(2 * f * (total * 2 + n_adapter * 4))
    assert fsdp_lora["reduce-scatter gradients"] == pytest.approx(f * n_adapter * 4)  # only the adapter's
    accumulated = comm_bytes(resolve(_cell("llama", grad_accum=4)), DistSetting("ddp", k))
    assert accumulated == ddp  # one all-reduce per optimizer step (no_sync while accumulating)


def test_communication_time_uses_nvlink_within_a_node_and_the_network_across_nodes():
    hw = load_catalogue()["a100-80gb"]
    comm = {"all-reduce gradients": 3e9}
    assert link(hw, DistSetting("ddp", 8)) == (300.0, "NVLink")
    assert comm_seconds(comm, hw, DistSetting("ddp", 8)) == pytest.approx(3e9 / 300e9)
    assert link(hw, DistSetting("ddp", 16, nodes=2)) == (25.0, "network")
    assert comm_seconds(comm, hw, DistSetting("ddp", 16, nodes=2)) == pytest.approx(3e9 / 25e9)
    assert link(load_catalogue()["rtx-4090"], DistSetting("ddp", 2)) == (32.0, "PCIe")
    assert comm_seconds({"all-reduce gradients": 1e9, "pcie": 6.4e9}, hw, DistSetting("fsdp", 8)) == pytest.approx(
        1e9 / 300e9 + 6.4e9 / 32e9)


def test_every_catalogue_gpu_states_its_host_link():
    for hw in load_catalogue().values():
        assert hw.kind != "gpu" or hw.pcie_gb_per_s
    assert load_catalogue()["h100-80gb"].nvlink_gb_per_s == 450.0  # 900 GB/s both directions together


def test_gpu_table_finds_the_smallest_k_that_fits():
    cell = _cell(quant="4bit")
    catalogue = load_catalogue()
    d = DistSetting("fsdp", 8, requested=False)
    rows = gpu_table(cell, catalogue, None, 1e6, {}, dist=d)
    assert {r["gpu"] for r in rows} == {n for n, h in catalogue.items() if h.kind == "gpu"}
    for row in rows:
        capacity = catalogue[row["gpu"]].memory_gib * 1024

        def fits(k, capacity=capacity):
            return predict_dist(cell, replace(d, k=k, nodes=max(1, -(-k // 8)))).device_total_mib <= capacity

        if row["smallest_k"] is None:
            assert not any(fits(k) for k in K_CHOICES)
            continue
        smaller = [k for k in K_CHOICES if k < row["smallest_k"]]
        assert fits(row["smallest_k"]) and not any(fits(k) for k in smaller)
        assert row["k"] == row["smallest_k"] and row["fits"]  # null processes: each GPU planned at its smallest k
        assert row["step_s"] == pytest.approx(max(row["compute_s"], row["comm_s"]))
        assert row["cost_usd"] == pytest.approx(row["hours"] * row["k"] * catalogue[row["gpu"]].price_usd_per_h)


def test_requested_k_is_planned_as_asked():
    rows = gpu_table(_cell(), {"a100-80gb": load_catalogue()["a100-80gb"]}, None, None, {}, dist=DistSetting("fsdp", 2))
    (row,) = rows
    assert row["k"] == 2 and not row["fits"] and row["smallest_k"] > 2


def test_llama_70b_fsdp_on_four_a100s_prints_per_gpu_terms_and_the_gpu_table(capsys):
    assert main(["model=llama-70b", "dist=fsdp", "dist.processes=4", "--gpu", "a100-80gb"]) == 0
    out = capsys.readouterr().out
    for needle in ("FSDP2 full shard, k=4 GPUs: every figure below is PER GPU", "| weights | ", "1/4 per GPU",
                   "| gathered |", "sent per GPU per optimizer step", "| a100-80gb | 80 | 4 |", "smallest k",
                   "step s = max(compute, comm)", "params: 70,553,706,496 total"):
        assert needle in out, needle


def test_null_processes_plans_every_gpu_at_its_smallest_k(capsys):
    assert main(["model=llama-70b", "dist=fsdp", "quant=4bit", "--json", "--gpu", "rtx-4090", "--gpu", "h200"]) == 0
    import json

    plan = json.loads(capsys.readouterr().out)["plans"][0]
    assert plan["cell"]["dist"]["requested"] is False
    planned = {row["gpu"]: (row["k"], row["smallest_k"]) for row in plan["gpus"]}
    assert planned["h200"][0] == planned["h200"][1] is not None
    assert planned["rtx-4090"] == (8, None)  # none fits: shown at k=8, the breakdown's k


def test_dist_anchor_errors_are_computed_from_the_prediction():
    for anchor in DIST_ANCHORS:
        row = evaluate_dist(anchor)
        d = DistSetting(anchor.strategy, anchor.k, cpu_offload=anchor.cpu_offload, storage_bytes=anchor.storage_bytes)
        cell = Cell(anchor.model, PeftConfig(method=anchor.method),
                    LoraConfig(r=anchor.r, modules=anchor.modules, dropout=anchor.dropout), QuantConfig(mode=anchor.quant),
                    TrainConfig(batch_size=anchor.batch, max_seq_len=anchor.seq, grad_accum=anchor.grad_accum,
                                gradient_checkpointing=anchor.checkpointing))
        device = predict_dist(cell, d, head=anchor.head, attention="sdpa").device_total_mib * MIB
        assert row["error_pct"] == pytest.approx((device - anchor.published_bytes) / anchor.published_bytes * 100)
        assert anchor.url.startswith("http")
    assert len(DIST_ANCHORS) >= 3
    catalogue = load_catalogue()
    for claim in FIT_CLAIMS:
        row = evaluate_claim(claim, catalogue)
        fits = row["pred_GiB_per_GPU"] * 1024 <= catalogue[claim.gpu].memory_gib * 1024
        assert row["fits_at_claimed_k"] == ("yes" if fits else "no")
        if fits:
            assert row["predicted_smallest_k"] <= claim.k
    assert "absolute error vs published: median" in dist_table()


def test_a_dist_record_is_predicted_per_rank():
    from dataclasses import asdict

    from harness.plan.calibrate import prediction_cells, to_point

    cell = _cell(quant="4bit")
    config = {"model": asdict(cell.model), "peft": asdict(cell.peft), "lora": asdict(cell.lora),
              "quant": asdict(cell.quant), "train": asdict(cell.train),
              "dist": {"strategy": "fsdp", "processes": 4, "nodes": 1, "port": None, "unknown_key": 1}}
    record = {"status": "ok", "cell_id": "c", "config": config,
              "memory": {"train_peak": {"counter": "cuda_peak_allocated", "peak_mib": 20000.0}}}
    per_rank = predict_dist(cell, DistSetting("fsdp", 4)).total_mib
    assert prediction_cells(record)["pred_mem_mib"] == pytest.approx(per_rank)
    assert per_rank < predict(cell).total_mib
    assert to_point(record) is not None  # a rank's peak calibrates the same coefficients
