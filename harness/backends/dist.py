"""What ``dist`` asks of transformers' Trainer: accelerate's FSDP or DeepSpeed plugin, and a check that it got it.

The Trainer builds accelerate's plugins from its arguments (``fsdp``/``fsdp_config``, ``deepspeed``), as trl's
SFTTrainer does; torchrun's environment (set by ``harness.worker.ranks``) makes it data parallel. accelerate
1.x enables FSDP only on accelerator devices: on CPU ranks it ignores the plugin and trains DDP, which
``check_strategy`` refuses to record as FSDP.
"""

from __future__ import annotations

from typing import Any, Dict

from harness.errors import UnsupportedError

EXPECTED = {"ddp": ("MULTI_GPU", "MULTI_CPU"), "fsdp": ("FSDP",), "deepspeed": ("DEEPSPEED",)}
"""accelerate's DistributedType names that honour each strategy."""


def wrapped_layers(model: Any) -> list:
    """The decoder-layer classes FSDP wraps one unit each: the model's ``_no_split_modules``, which accelerate
    wraps when no class is named (the arguments are built before the model exists on a sharded rank)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # under a peft adapter
    return list(getattr(base, "_no_split_modules", None) or [])


def deepspeed_config(dist: Any) -> Dict[str, Any]:
    """A ZeRO config for the Trainer ("auto" values are filled from its own arguments).

    The Trainer's own optimizer (``train.optimizer``) stays: DeepSpeed refuses a client optimizer under ZeRO-Offload
    unless ``zero_force_ds_cpu_optimizer`` is off, and one it has not tested (bitsandbytes' 8-bit AdamW) unless allowed."""
    zero: Dict[str, Any] = {"stage": dist.zero_stage, "overlap_comm": True, "contiguous_gradients": True}
    if dist.cpu_offload:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
        if dist.zero_stage == 3:
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    if dist.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True  # save_model writes whole weights
    return {"zero_optimization": zero, "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
            "gradient_clipping": "auto", "bf16": {"enabled": "auto"}, "fp16": {"enabled": "auto"},
            "zero_force_ds_cpu_optimizer": False, "zero_allow_untested_optimizer": True}


def trainer_args(cfg: Any, quantized: bool = False) -> Dict[str, Any]:
    """Extra ``SFTConfig`` arguments for ``cfg.dist`` (empty for one process); ``quantized``: a bitsandbytes base, which
    every rank loads onto its own GPU (bitsandbytes quantizes as it moves weights there), so not rank 0 alone."""
    dist = cfg.dist
    if not dist.enabled():
        return {}
    # with a frozen base, DDP's unused-parameter search only costs a graph walk; activation recomputation under
    # DDP/FSDP needs the non-reentrant checkpoint
    out: Dict[str, Any] = {"ddp_find_unused_parameters": False, "gradient_checkpointing_kwargs": {"use_reentrant": False}}
    if dist.strategy == "fsdp":
        out["fsdp"] = True
        out["fsdp_config"] = {
            "version": dist.fsdp_version,
            "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",  # the model's _no_split_modules: one decoder layer a unit
            "reshard_after_forward": True if dist.fsdp_version == 2 else "FULL_SHARD",
            "cpu_offload": dist.cpu_offload,
            "activation_checkpointing": dist.activation_checkpointing,
            "state_dict_type": "FULL_STATE_DICT",  # save_model gathers whole weights on rank 0
            # rank 0 reads the checkpoint, the others build on the meta device and get their shards from it: k copies
            # of a 70B model in host memory would not fit
            "cpu_ram_efficient_loading": not quantized,
        }
    elif dist.strategy == "deepspeed":
        out["deepspeed"] = deepspeed_config(dist)
    return out


def check_strategy(cfg: Any, trainer: Any) -> Dict[str, Any]:
    """What accelerate set up for the built trainer; raises ``UnsupportedError`` when it is not ``cfg.dist.strategy``."""
    accelerator = trainer.accelerator
    kind = str(getattr(accelerator.distributed_type, "name", accelerator.distributed_type))
    seen = {"distributed_type": kind, "processes": int(accelerator.num_processes)}
    if kind not in EXPECTED[cfg.dist.strategy]:
        raise UnsupportedError(
            f"dist={cfg.dist.strategy}: accelerate set up {kind} on {accelerator.device.type}, not {cfg.dist.strategy} "
            f"(accelerate enables FSDP and DeepSpeed only on accelerator devices); the cell would not measure "
            f"{cfg.dist.strategy}")
    if int(accelerator.num_processes) != int(cfg.dist.processes):
        raise UnsupportedError(f"dist.processes={cfg.dist.processes}: accelerate sees {accelerator.num_processes} processes")
    if kind == "FSDP":
        plugin = accelerator.state.fsdp_plugin
        seen.update(fsdp_version=plugin.fsdp_version, cpu_offload=offloads(plugin),
                    activation_checkpointing=bool(plugin.activation_checkpointing),
                    cpu_ram_efficient_loading=bool(plugin.cpu_ram_efficient_loading),
                    wrapped=plugin.transformer_cls_names_to_wrap or wrapped_layers(trainer.model))
    return seen


def offloads(plugin: Any) -> bool:
    """Whether accelerate's FSDP plugin keeps parameters on the CPU: FSDP2 holds torch's ``CPUOffloadPolicy`` (or
    ``OffloadPolicy``, which does not offload), FSDP1 a ``CPUOffload(offload_params=...)``."""
    policy = plugin.cpu_offload
    if hasattr(policy, "offload_params"):
        return bool(policy.offload_params)
    return type(policy).__name__ == "CPUOffloadPolicy"
