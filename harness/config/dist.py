"""``dist``: one cell trained by several processes (ranks): DDP, FSDP or DeepSpeed ZeRO, launched through accelerate.

The strategy, the rank count and the sharding keys decide a cell's memory and numerics, so they are part of its
identity (``harness.store.identity``); the rendezvous port is not. ``dist=none`` (the default) is one process on one
device, as before, and leaves stored cells' ids unchanged. The worker that launches the ranks is
``harness.worker.ranks``; the per-GPU planner terms are in ``harness.plan.dist``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from harness.config.names import one_of, require

STRATEGIES = ("none", "ddp", "fsdp", "deepspeed")
"""none: one process; ddp: replicated weights, all-reduced gradients; fsdp: full shard (FSDP2 by default);
deepspeed: ZeRO stage 2 or 3 (needs ``pip install deepspeed``)."""


@dataclass
class DistConfig:
    """How many processes train one cell, and how they split the model."""

    strategy: str = "none"
    """none (one process), ddp, fsdp (full shard) or deepspeed (ZeRO; ``dist.zero_stage``)."""
    processes: Optional[int] = None
    """Ranks in all (the world size, across every node); null: the GPUs visible to the cell times dist.nodes (on a
    CPU cell it must be set)."""
    nodes: int = 1
    """Machines the ranks span (dist.processes / dist.nodes ranks on each); above 1 the cell runs under a SLURM
    launcher (hydra/launcher=submitit_slurm), whose variables give each node its rank and the rendezvous host."""
    fsdp_version: int = 2
    """FSDP API: 2 (``fully_shard``, per-parameter DTensor sharding) or 1 (flat parameters)."""
    cpu_offload: bool = False
    """fsdp: parameters and gradients live on the CPU between uses; deepspeed: optimizer states and (ZeRO-3)
    parameters on the CPU. Cuts GPU memory, costs PCIe traffic each step."""
    activation_checkpointing: bool = False
    """fsdp: recompute each wrapped decoder layer's activations in backward (the FSDP way of train.gradient_checkpointing)."""
    zero_stage: int = 3
    """deepspeed: 2 (optimizer states and gradients sharded) or 3 (parameters too)."""
    port: Optional[int] = None
    """Rendezvous port of rank 0 (torchrun's master port); null: a free port on one node, one derived from the SLURM
    job id on several. Not part of the cell's identity."""

    def __post_init__(self) -> None:
        one_of("dist.strategy", self.strategy, STRATEGIES)
        require(self.processes is None or (isinstance(self.processes, int) and self.processes >= 1), "dist.processes",
                self.processes, "must be a positive integer (or null: the GPUs visible to the cell)")
        require(self.nodes >= 1, "dist.nodes", self.nodes, "must be a positive integer")
        require(self.processes is None or self.processes % self.nodes == 0, "dist.processes", self.processes,
                f"must be a multiple of dist.nodes={self.nodes} (the same number of ranks on every node)")
        one_of("dist.fsdp_version", self.fsdp_version, (1, 2))
        one_of("dist.zero_stage", self.zero_stage, (2, 3))
        require(self.port is None or 1024 <= self.port <= 65535, "dist.port", self.port, "must be a port in 1024..65535 (or null)")
        require(self.strategy != "none" or self.nodes == 1, "dist.nodes", self.nodes, "needs a strategy: set dist=ddp, fsdp or deepspeed")

    def enabled(self) -> bool:
        """True when the cell trains in several processes (any strategy but none)."""
        return self.strategy != "none"
