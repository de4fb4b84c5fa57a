"""The litgpt backend: LitGPT trains in its own environment; the harness's worker feeds it, measures and evaluates.

LitGPT pins libraries the harness has moved past (huggingface-hub < 1.4, its own psutil) and brings its own
model code and training loop, so it never shares the harness's environment. The worker (harness
environment) tokenizes, checks what LitGPT can honour, computes the micro-batch order the hf backend's
Trainer draws, and hands a framework-neutral spec plus the tokenized rows to
``harness.frameworks.litgpt_runner`` run with ``.venvs/litgpt``'s Python (``make setup-litgpt``). The runner
trains with LitGPT's ``fit`` loop, measures with the harness's own meters, and writes merged Hugging Face
weights; the worker then loads them and every evaluator scores them exactly as it scores the hf backend.

Not supported (the cell ends ``unsupported`` naming the key): quantized bases, DoRA, full fine-tuning,
gradient checkpointing, architectures other than llama / mistral / qwen2, optimizers other than AdamW,
schedules other than linear / cosine / constant (with warm-up), a LoRA target set that splits the MLP
(LitGPT's ``lora_mlp`` covers gate, up and down together), and epoch-based runs whose epochs do not end on
an optimizer step.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from harness.backends.hf import HFBackend, hub_error
from harness.config.peft import lora_target_modules
from harness.data.prepare import PreparedData
from harness.errors import UnsupportedError
from harness.files import share_tree, write_json_atomic
from harness.measure.meters import StepMeter
from harness.store.venvs import runner_python

ARCHS = ("llama", "mistral", "qwen2")
"""Hugging Face architectures whose weights LitGPT's Llama-family converters map both ways."""
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
OPTIMIZERS = ("adamw_torch", "adamw_torch_fused")
LAYER_FLAGS = {"q_proj": "query", "k_proj": "key", "v_proj": "value", "o_proj": "projection", "lm_head": "head"}
MLP_MODULES = ("gate_proj", "up_proj", "down_proj")
RUNNER = "harness.frameworks.litgpt_runner"
MAX_GRAD_NORM = 1.0
"""transformers' default ``max_grad_norm``, which the hf backend trains with; the runner clips the same."""


def lora_layers(targets: List[str]) -> Dict[str, bool]:
    """LitGPT's ``lora_*`` switches for the hf backend's target modules (UnsupportedError when they cannot match)."""
    mlp = [name for name in MLP_MODULES if name in targets]
    if mlp and len(mlp) != len(MLP_MODULES):
        raise UnsupportedError(f"lora.modules={','.join(targets)}: LitGPT puts LoRA on gate, up and down projections "
                               "together (lora_mlp) or on none of them")
    flags = {flag: name in targets for name, flag in LAYER_FLAGS.items()}
    return {**flags, "mlp": bool(mlp)}


def hf_micro_batches(n: int, batch_size: int, seed: int, count: int) -> List[List[int]]:
    """The first ``count`` micro-batches (row indices) the hf backend's Trainer draws from ``n`` rows.

    accelerate's SeedableRandomSampler (what the Trainer's RandomSampler becomes with ``data_seed``) reseeds a
    generator with data_seed + epoch at each epoch and draws ``torch.randperm(n)``; batches keep a short last one.
    """
    import torch

    batches: List[List[int]] = []
    epoch = 0
    while len(batches) < count:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
        batches += [order[i:i + batch_size] for i in range(0, n, batch_size)]
        epoch += 1
    return batches[:count]


def optimizer_steps(train: Any, rows: int) -> int:
    """Optimizer steps the hf backend takes: max_steps, else whole epochs that end on an optimizer step."""
    if train.max_steps > 0:
        return int(train.max_steps)
    per_epoch = math.ceil(rows / train.batch_size)
    if train.epochs != int(train.epochs) or per_epoch % train.grad_accum:
        raise UnsupportedError(f"train.epochs={train.epochs}: with {per_epoch} micro-batches per epoch and grad_accum="
                               f"{train.grad_accum}, the hf Trainer steps on a short accumulation at each epoch end and "
                               "LitGPT's loop does not; set train.max_steps")
    return int(train.epochs) * per_epoch // train.grad_accum


class LitGPTBackend(HFBackend):
    """LitGPT's LoRA fine-tuning through its runner; tokenizer, evaluation and its model view as the hf backend."""

    def _check_supported(self) -> None:
        """An UnsupportedError naming the key for what LitGPT's LoRA path cannot do."""
        cfg = self.cfg
        problems = [
            (cfg.quant.mode != "none", f"quant.mode={cfg.quant.mode}: the litgpt framework trains unquantized bases only"),
            (cfg.peft.method != "lora", f"peft.method={cfg.peft.method}: the litgpt framework runs LoRA only "
                                        "(LitGPT has no DoRA; its full fine-tune is not wired)"),
            (cfg.model.arch not in ARCHS, f"model.arch={cfg.model.arch}: the litgpt framework converts "
                                          f"{', '.join(ARCHS)} checkpoints"),
            (cfg.train.optimizer not in OPTIMIZERS, f"train.optimizer={cfg.train.optimizer}: the litgpt runner uses AdamW"),
            (cfg.train.lr_scheduler not in SCHEDULERS, f"train.lr_scheduler={cfg.train.lr_scheduler}: the litgpt runner "
                                                       f"steps {', '.join(SCHEDULERS)}"),
            (cfg.train.gradient_checkpointing, "train.gradient_checkpointing=true: LitGPT's LoRA loop has no activation "
                                               "checkpointing on one device"),
        ]
        for failed, message in problems:
            if failed:
                raise UnsupportedError(message)

    def load_model(self, weights: Optional[Path] = None) -> Dict[str, Any]:
        """Before training nothing is loaded here (LitGPT loads in its runner; counts come from it); with
        ``weights`` (the merged folder the runner wrote), that model, for evaluation."""
        if weights is None:
            self._check_supported()
            return {}
        from transformers import AutoModelForCausalLM

        self.model = AutoModelForCausalLM.from_pretrained(str(weights), dtype=self.dtype).to(self.ctx.device)
        return {"total_params": sum(p.numel() for p in self.model.parameters())}

    def model_view(self) -> Any:
        """The merged trained model; before training, the untrained base for the baselines (loaded on demand)."""
        if self.model is None:
            super().load_model()  # base + a fresh LoRA adapter, which starts as a no-op
        return super().model_view()

    def _checkpoint(self) -> Path:
        """The base checkpoint as a local Hugging Face folder (downloaded from the hub when it is a hub id)."""
        source = self._source()
        if Path(source).is_dir():
            return Path(source)
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(source, revision=self.cfg.model.revision,
                                          allow_patterns=["*.json", "*.safetensors", "tokenizer*"]))
        except Exception as exc:  # noqa: BLE001 - offline, gated or missing: one line
            raise hub_error(self.cfg, exc) from exc

    def _spec(self, data: PreparedData, out: Path) -> Dict[str, Any]:
        """The framework-neutral spec the runner trains from."""
        import torch

        train, lora = self.cfg.train, self.cfg.lora
        steps = optimizer_steps(train, len(data.train))
        return {
            "checkpoint": str(self._checkpoint()), "arch": self.cfg.model.arch, "device": self.ctx.device,
            "dtype": str(self.dtype).replace("torch.", "") if isinstance(self.dtype, torch.dtype) else str(self.dtype),
            "pad_id": self.tokenizer.pad_token_id, "out": str(out),
            "lora": {"r": lora.r, "alpha": lora.alpha, "dropout": lora.dropout,
                     **lora_layers(lora_target_modules(self.cfg.model.arch, lora))},
            "train": {"batch_size": train.batch_size, "grad_accum": train.grad_accum, "max_steps": steps, "lr": train.lr,
                      "weight_decay": train.weight_decay, "warmup_steps": train.warmup_steps, "seed": train.seed,
                      "lr_scheduler": train.lr_scheduler, "optimizer": train.optimizer, "max_grad_norm": MAX_GRAD_NORM,
                      "max_seq_len": train.max_seq_len, "eval_every": train.eval_every,
                      "early_stopping_patience": train.early_stopping_patience if train.eval_every > 0 else 0,
                      "early_stopping_min_delta": train.early_stopping_min_delta},
            "order": hf_micro_batches(len(data.train), train.batch_size, train.seed, steps * train.grad_accum),
            "meter": {"grad_accum": train.grad_accum, "warmup": train.measure_warmup_steps, "cv_warn": self.cfg.run.step_cv_warn},
            "progress": self._progress(),
        }

    def _progress(self) -> Optional[Dict[str, Any]]:
        """Where the runner reports its training position (the worker's progress.json, same attempt)."""
        writer = getattr(self.ctx, "progress", None)
        if writer is None or writer.path is None:
            return None
        return {"cell_dir": str(writer.path.parent), "attempt": writer.state["attempt"], "started": writer.state["started"]}

    def _run(self, run_dir: Path) -> None:
        """Run the runner with LitGPT's Python; its output goes to the worker's log; a failure raises with its last line."""
        from harness.measure.oom import oom_kill_count
        from harness.store.venvs import REPO

        before = oom_kill_count()
        command = [str(runner_python(dataclasses.asdict(self.cfg.framework))), "-m", RUNNER, str(run_dir)]
        sys.stdout.flush()
        proc = subprocess.run(command, stdout=sys.stdout, stderr=subprocess.PIPE, text=True, cwd=REPO)
        sys.stderr.write(proc.stderr)
        if proc.returncode == 0:
            return
        after = oom_kill_count()
        if proc.returncode == -9 and before is not None and after is not None and after > before:
            raise MemoryError("LitGPT's runner was killed by the kernel's OOM killer")
        last = next((line for line in reversed(proc.stderr.splitlines()) if line.strip()), f"exit code {proc.returncode}")
        raise RuntimeError(f"LitGPT's runner failed: {last.strip()}")

    def train(self, data: PreparedData, meter: StepMeter) -> Dict[str, Any]:
        """Train in LitGPT's environment; returns its stats with what its own meters measured (``measured``)."""
        self.model = None  # the base loaded for the baselines must not sit in memory beside LitGPT's
        gc.collect()
        run_dir = self.ctx.cell_dir / "litgpt"
        run_dir.mkdir(exist_ok=True)
        out = self.ctx.cell_dir / "model"
        for name, rows in (("train", data.train), ("heldout", data.heldout)):
            with (run_dir / f"{name}.jsonl").open("w") as handle:
                for row in rows:
                    handle.write(json.dumps({"input_ids": list(row["input_ids"]), "labels": list(row["labels"])}) + "\n")
        write_json_atomic(run_dir / "spec.json", self._spec(data, out))
        self._run(run_dir)
        stats = json.loads((run_dir / "stats.json").read_text())
        self.tokenizer.save_pretrained(out)  # the merged folder loads on its own, later evaluations included
        share_tree(out)
        self.load_model(weights=out)
        return stats

    def save_weights(self, cell_dir: Path) -> Optional[Path]:
        """The merged weights the runner wrote (LitGPT's fused-qkv LoRA has no peft adapter form)."""
        folder = cell_dir / "model"
        return folder if folder.is_dir() else None
