"""A cell's efficiency, energy and money, from its measured throughput and the hardware catalogue.

Runs in the worker after training but imports no torch: it reads the meter's summary, the
data stats, the environment block and the NVML figures, so it is unit-testable anywhere.
Every figure that cannot be computed is None with its reason under ``absent``.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from harness.config.hardware import Hardware, load_catalogue, match_device
from harness.config.peft import lora_target_modules
from harness.plan.flops import FORMULA, flops_per_token
from harness.plan.params import adapter_params, count_params

DEFINITIONS = {
    "flops_per_token": "model FLOPs per non-padding token, forward + backward, no recomputation: see flops_formula",
    "flops_seq_len": "sequence length used in the attention term: mean non-padding tokens per training sequence",
    "achieved_tflops": "flops_per_token x all_tokens_per_s / 1e12 (model TFLOP/s sustained over measured steps)",
    "mfu": "achieved_tflops / the catalogue's dense bf16 peak of the matched device (0..1)",
    "hardware": "catalogue entry (hardware/<name>.yaml) the device was matched to by name and memory",
    "energy_j": "NVML total-energy counter difference over training (whole device), J",
    "avg_power_w": "energy_j / training wall time, W",
    "energy_j_per_token": "energy_j / non-padding tokens trained, J",
    "train_cost_usd": "catalogue price per hour x training wall time (load, data, eval excluded), USD",
    "usd_per_million_trained_tokens": "catalogue price per hour / (3600 x tokens_per_s) x 1e6: steady-state cost of a million loss-bearing tokens, USD",
    "projected_train_s": "train.epochs x the training split's non-padding tokens / all_tokens_per_s: a full run of the configured dataset and epochs, s",
    "projected_cost_usd": "projected_train_s / 3600 x catalogue price per hour, USD",
}


def match_hardware(env: Dict[str, Any], catalogue: Dict[str, Hardware]) -> Optional[Hardware]:
    """The catalogue entry of the device in a record's environment block (GPU by name + memory; CPU by model name)."""
    if env.get("device") == "cuda":
        memory = env.get("memory_mib")
        gpus = {k: v for k, v in catalogue.items() if v.kind == "gpu"}
        return match_device(env.get("name"), gpus, memory / 1024 if memory else None)
    cpus = {k: v for k, v in catalogue.items() if v.kind == "cpu"}
    return match_device(env.get("cpu_model") or env.get("name"), cpus)


def efficiency(
    cfg: Any,
    train: Dict[str, Any],
    data: Dict[str, Any],
    env: Dict[str, Any],
    train_s: Optional[float],
    nvml: Optional[Dict[str, Any]] = None,
    catalogue: Optional[Dict[str, Hardware]] = None,
    devices: int = 1,
) -> Dict[str, Any]:
    """The record's ``efficiency`` block: FLOPs, MFU, energy, cost and the full-dataset projection.

    ``devices``: the ranks that trained the cell (``train`` then holds global throughput): MFU is against
    ``devices`` x the device's peak and the price is that of ``devices`` devices."""
    absent: Dict[str, str] = {}
    out: Dict[str, Any] = {"absent": absent, "devices": devices}
    out.update(_flops(cfg, train))
    hw = _hardware(env, catalogue, absent)
    out["hardware"] = hw.name if hw else None
    out.update(_mfu(out["achieved_tflops"], hw, absent, devices))
    out.update(_energy(nvml, train_s, train.get("all_tokens") or 0, absent))
    out.update(_money(hw, train_s, train.get("tokens_per_s"), absent, devices))
    out.update(_projection(data, cfg.train.epochs, train.get("all_tokens_per_s"), out["price_usd_per_h"], absent))
    return out


def _flops(cfg: Any, train: Dict[str, Any]) -> Dict[str, Any]:
    """FLOPs per token (formula and its inputs) and the TFLOP/s they make at the measured all-token rate."""
    adapter = cfg.peft.method in ("lora", "dora")
    n_adapter = (
        adapter_params(cfg.model, lora_target_modules(cfg.model.arch, cfg.lora), cfg.lora.r, cfg.peft.method == "dora")
        if adapter else 0
    )
    samples, all_tokens = train.get("samples") or 0, train.get("all_tokens") or 0
    # the attention term grows with sequence length: use the trained mean, the configured cap only without one
    seq = all_tokens / samples if samples else float(cfg.train.max_seq_len)
    fpt = flops_per_token(cfg.model, seq, n_adapter, full=not adapter)
    rate = train.get("all_tokens_per_s")
    return {
        "flops_per_token": fpt,
        "flops_formula": FORMULA["adapter" if adapter else "full"],
        "flops_n_matmul": count_params(cfg.model).matmul,
        "flops_n_adapter": n_adapter,
        "flops_seq_len": seq,
        "achieved_tflops": fpt * rate / 1e12 if rate else None,
    }


def _hardware(env: Dict[str, Any], catalogue: Optional[Dict[str, Hardware]], absent: Dict[str, str]) -> Optional[Hardware]:
    """The catalogue entry of the record's device (catalogue read from disk when not given); why not, in ``absent``."""
    if catalogue is None:
        try:
            catalogue = load_catalogue()
        except Exception as exc:  # noqa: BLE001 - a broken catalogue must not fail a trained cell
            catalogue, absent["hardware"] = {}, f"hardware catalogue unreadable: {exc}"
    hw = match_hardware(env, catalogue)
    if hw is None:
        absent.setdefault(
            "hardware",
            f"no catalogue entry matches device {env.get('cpu_model') or env.get('name')!r}; "
            "add one to hardware/ for MFU and cost",
        )
    return hw


def _mfu(achieved_tflops: Optional[float], hw: Optional[Hardware], absent: Dict[str, str], devices: int = 1) -> Dict[str, Any]:
    """The bf16 peak of ``devices`` matched devices and the share of it achieved; why MFU is missing, in ``absent``."""
    out: Dict[str, Any] = {"peak_tflops": hw.bf16_tflops * devices if hw else None}
    out["mfu"] = achieved_tflops / out["peak_tflops"] if hw and achieved_tflops else None
    if out["mfu"] is None:
        absent.setdefault("mfu", absent.get("hardware", "no measured throughput"))
    return out


def _energy(
    nvml: Optional[Dict[str, Any]], train_s: Optional[float], all_tokens: float, absent: Dict[str, str]
) -> Dict[str, Any]:
    """NVML's training energy, the mean power over training and the energy per token; why not, in ``absent``."""
    nvml = nvml or {}
    energy = nvml.get("energy_j")
    out: Dict[str, Any] = {"energy_j": energy}
    out["avg_power_w"] = energy / train_s if energy is not None and train_s else None
    out["energy_j_per_token"] = energy / all_tokens if energy is not None and all_tokens else None
    if energy is None:
        absent["energy"] = nvml.get("absent", {}).get("energy", "no NVML energy reading")
    return out


def _money(
    hw: Optional[Hardware], train_s: Optional[float], loss_rate: Optional[float], absent: Dict[str, str], devices: int = 1
) -> Dict[str, Any]:
    """The run's training cost on ``devices`` devices and the steady-state cost of a million loss-bearing tokens;
    why not, in ``absent``."""
    price = hw.price_usd_per_h * devices if hw and hw.price_usd_per_h is not None else None
    out: Dict[str, Any] = {"price_usd_per_h": price}
    out["train_cost_usd"] = price * train_s / 3600 if price is not None and train_s else None
    out["usd_per_million_trained_tokens"] = price / 3600 / loss_rate * 1e6 if price is not None and loss_rate else None
    if price is None:
        absent["cost"] = absent.get("hardware", f"catalogue entry {hw.name if hw else '?'} has no price")
    return out


def _projection(
    data: Dict[str, Any], epochs: float, rate: Optional[float], price: Optional[float], absent: Dict[str, str]
) -> Dict[str, Any]:
    """Tokens, time and cost of a full run of the training split for the configured epochs; why not, in ``absent``."""
    split_tokens = (data.get("train") or {}).get("tokens")
    out: Dict[str, Any] = {"projection_tokens": split_tokens * epochs if split_tokens else None}
    out["projected_train_s"] = split_tokens * epochs / rate if split_tokens and rate else None
    out["projected_cost_usd"] = (
        out["projected_train_s"] / 3600 * price if out["projected_train_s"] is not None and price is not None else None
    )
    if out["projected_train_s"] is None:
        absent["projection"] = "no token count for the training split or no measured throughput"
    return out
