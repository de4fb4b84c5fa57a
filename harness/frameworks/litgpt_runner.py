"""LitGPT's LoRA fine-tuning on rows the harness tokenized; runs inside LitGPT's own environment.

    <.venvs/litgpt>/bin/python -m harness.frameworks.litgpt_runner RUN_DIR

The harness's worker (``harness/backends/litgpt.py``) writes ``RUN_DIR/spec.json`` (a framework-neutral
spec: the Hugging Face checkpoint folder, LoRA settings, the optimisation settings and the explicit
micro-batch order) and ``train.jsonl`` / ``heldout.jsonl`` (input_ids and labels). This runner converts the
checkpoint with LitGPT's own converters, builds LitGPT's LoRA GPT (fused qkv), and trains it with LitGPT's
``finetune.lora.fit`` loop under Lightning Fabric, with the harness's StepMeter and MemoryMeter around it.
It then merges the LoRA weights, converts them back to a Hugging Face folder (``spec["out"]``: the worker
evaluates those merged weights with the same evaluators as every other framework; LitGPT's fused-qkv LoRA
has no converter to a peft adapter) and writes ``RUN_DIR/stats.json``.

What the harness makes equal to its hf backend, on purpose: the micro-batch order (HF's seeded sampler,
computed by the worker), right padding with -100 labels, the learning-rate schedule (transformers'
formulas, not LitGPT's warm-up + cosine only), gradient clipping at ``max_grad_norm`` before each optimizer
step, AdamW's settings, early stopping on held-out loss. What stays LitGPT's: the model code, its LoRA
layers and their initialisation draw, its chunked cross-entropy (mean per micro-batch, averaged over
grad_accum; trl weights every token of the accumulated batch equally), Fabric's precision.

Imports only the standard library, torch, lightning, litgpt and light harness modules (measure, records,
steplog): the harness is installed into this environment without its dependencies.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import torch
from safetensors.torch import load_file, save_file

from harness.files import write_json_atomic
from harness.measure.meters import MemoryMeter, StepMeter
from harness.measure.steplog import log_line
from harness.store.progress import ProgressWriter

PRECISION = {"float32": "32-true", "bfloat16": "bf16-true", "float16": "16-true"}
"""The cell's dtype as a Fabric precision: weights and compute in that dtype (LoRA weights included)."""


class Stop(Exception):
    """Ends LitGPT's loop early (early stopping, a non-finite loss); what was trained is kept."""


def lit_config(hf: Dict[str, Any], arch: str, lora: Dict[str, Any]) -> Any:
    """LitGPT's LoRA Config for a Llama-family Hugging Face config (llama, mistral, qwen2)."""
    from litgpt.lora import Config

    heads = hf["num_attention_heads"]
    rope = hf.get("rope_parameters") or {"rope_theta": hf.get("rope_theta", 10000.0), "rope_type": "default"}
    adjust = None
    if rope.get("rope_type") == "llama3":
        adjust = {"factor": rope["factor"], "low_freq_factor": rope["low_freq_factor"],
                  "high_freq_factor": rope["high_freq_factor"],
                  "original_max_seq_len": rope["original_max_position_embeddings"]}
    return Config(
        name=f"harness-{arch}", block_size=hf["max_position_embeddings"], vocab_size=hf["vocab_size"],
        padded_vocab_size=hf["vocab_size"], n_layer=hf["num_hidden_layers"], n_head=heads,
        n_embd=hf["hidden_size"], n_query_groups=hf.get("num_key_value_heads") or heads,
        head_size=hf.get("head_dim") or hf["hidden_size"] // heads, rotary_percentage=1.0, parallel_residual=False,
        bias=False, attn_bias=arch == "qwen2", norm_class_name="RMSNorm", norm_eps=hf["rms_norm_eps"],
        mlp_class_name="LLaMAMLP", intermediate_size=hf["intermediate_size"], rope_base=int(rope["rope_theta"]),
        rope_adjustments=adjust, **{f"lora_{k}": v for k, v in lora.items()},
    )


def peft_lora_params(hf: Dict[str, Any], lora: Dict[str, Any]) -> int:
    """Trainable parameters peft gives the same targets on the Hugging Face model: r x (in + out) per adapted linear."""
    hidden, heads, inter = hf["hidden_size"], hf["num_attention_heads"], hf["intermediate_size"]
    head_dim = hf.get("head_dim") or hidden // heads
    kv = (hf.get("num_key_value_heads") or heads) * head_dim
    per_layer = {"query": hidden + heads * head_dim, "key": hidden + kv, "value": hidden + kv,
                 "projection": heads * head_dim + hidden, "mlp": 3 * (hidden + inter)}
    layers = sum(size for name, size in per_layer.items() if lora.get(name)) * hf["num_hidden_layers"]
    return lora["r"] * (layers + ((hidden + hf["vocab_size"]) if lora.get("head") else 0))


def _copiers(arch: str) -> tuple:
    from litgpt.scripts import convert_hf_checkpoint as to_lit
    from litgpt.scripts import convert_lit_checkpoint as to_hf

    if arch == "qwen2":
        return to_lit.copy_weights_qwen_2_5, to_hf.copy_weights_qwen_2_5
    return to_lit.copy_weights_hf_llama, to_hf.copy_weights_llama


def load_hf_weights(folder: Path, config: Any, arch: str, dtype: torch.dtype) -> Dict[str, torch.Tensor]:
    """The checkpoint's safetensors shards as a LitGPT state dict (LitGPT's own converter)."""
    hf: Dict[str, torch.Tensor] = {}
    for shard in sorted(folder.glob("*.safetensors")):
        hf.update(load_file(str(shard)))
    state: Dict[str, torch.Tensor] = {}
    _copiers(arch)[0](config, {}, state, hf, dtype=dtype)
    return state


def save_merged(model: Any, config: Any, arch: str, source: Path, out: Path, tied: bool) -> None:
    """Merge LoRA into the base weights and write a Hugging Face folder (config from the source checkpoint)."""
    from litgpt.lora import lora_filter, merge_lora_weights

    merge_lora_weights(model)
    lit = {k.replace("linear.", ""): v for k, v in model.state_dict().items() if not lora_filter(k, v)}
    hf: Dict[str, torch.Tensor] = {}
    _copiers(arch)[1](config, hf, lit, untie_weights=tied)
    if tied:
        hf.pop("lm_head.weight", None)  # transformers ties it to the embeddings on load
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().to("cpu").contiguous() for k, v in hf.items()}, str(out / "model.safetensors"))
    for name in ("config.json", "generation_config.json"):
        if (source / name).exists():
            (out / name).write_bytes((source / name).read_bytes())


def lr_lambda(kind: str, warmup: int, total: int):
    """transformers' schedule formulas (get_scheduler) as a LambdaLR factor, so both frameworks step the same lr."""
    def factor(step: int) -> float:
        if kind == "constant":  # transformers' constant schedule ignores warmup_steps
            return 1.0
        if step < warmup:
            return step / max(1, warmup)
        if kind == "constant_with_warmup":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        if kind == "linear":
            return max(0.0, (total - step) / max(1, total - warmup))
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))  # cosine, 0.5 cycles
    return factor


def _read_rows(path: Path) -> List[Dict[str, List[int]]]:
    with path.open() as handle:
        return [json.loads(line) for line in handle if line.strip()]


class Collate:
    """Right-pads a micro-batch (pad id; labels -100), adds LitGPT's token counts and tells the meter what it holds."""

    def __init__(self, pad_id: int, meter: StepMeter | None, grad_accum: int) -> None:
        self.pad_id, self.meter, self.grad_accum, self.calls = pad_id, meter, grad_accum, 0

    def __call__(self, rows: List[Dict[str, List[int]]]) -> Dict[str, Any]:
        longest = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), longest), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), longest), -100, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row["input_ids"])] = torch.tensor(row["input_ids"])
            labels[i, : len(row["labels"])] = torch.tensor(row["labels"])
        lengths = torch.tensor([len(r["input_ids"]) for r in rows])
        if self.meter is not None:
            if self.calls % self.grad_accum == 0:
                self.meter.step_begin()
            self.calls += 1
            self.meter.on_batch(len(rows), int(lengths.sum()), int((labels[:, 1:] != -100).sum()), shape=tuple(ids.shape))
        return {"input_ids": ids, "labels": labels, "token_counts": {"raw": lengths, "raw_plus_prompt_template": lengths}}


class Steps:
    """Stands in for Fabric's optimizer inside ``fit``: clips, steps, closes the meter's step, logs the step's loss."""

    def __init__(self, fabric: Any, model: Any, optimizer: Any, spec: Dict[str, Any], meter: StepMeter) -> None:
        self.fabric, self.model, self.optimizer, self.spec, self.meter = fabric, model, optimizer, spec, meter
        where = spec.get("progress") or {}
        self.progress = ProgressWriter(Path(where["cell_dir"]) if where else None, where.get("attempt"),
                                       started=where.get("started"))
        self.progress.phase("train")
        self.count, self.losses, self.loss_curve, self.eval_curve = 0, [], [], []
        self.diverged: Dict[str, Any] | None = None
        self.begun = self.last = time.perf_counter()

    def micro_loss(self, loss: torch.Tensor) -> None:
        self.losses.append(loss.detach())

    def zero_grad(self, *args: Any, **kwargs: Any) -> None:
        self.optimizer.zero_grad(*args, **kwargs)

    def step(self, *args: Any, **kwargs: Any) -> None:
        """Clip, step, end the meter's step, log the step's loss (the mean of its micro-batch losses)."""
        train = self.spec["train"]
        if train["max_grad_norm"]:
            self.fabric.clip_gradients(self.model, self.optimizer, max_norm=train["max_grad_norm"], error_if_nonfinite=False)
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.meter.step_end()
        self.count += 1
        loss = float(torch.stack(self.losses).float().mean()) if self.losses else float("nan")
        self.losses = []
        self.loss_curve.append([self.count, loss])
        now = time.perf_counter()
        print(log_line(self.count, train["max_steps"], {"loss": loss, "learning_rate": lr}, now - self.last, now - self.begun),
              flush=True)
        self.last = now
        self.progress.step(self.count, train["max_steps"], loss if math.isfinite(loss) else None)
        if not math.isfinite(loss):
            self.diverged = {"step": self.count, "metric": "loss", "value": str(loss)}
            raise Stop("non-finite loss")

    def __getattr__(self, name: str) -> Any:  # anything else fit asks of the optimizer
        return getattr(self.optimizer, name)


def _patch_fit(steps: Steps, spec: Dict[str, Any]) -> Dict[str, Any]:
    """LitGPT's fit with its example generation off, its training loss and validations seen by the harness."""
    import litgpt.finetune.lora as lit

    state: Dict[str, Any] = {"validating": False, "best": None, "bad": 0, "stopped_at": None}
    chunked, validate = lit.chunked_cross_entropy, lit.validate
    train = spec["train"]

    def loss_fn(*args: Any, **kwargs: Any) -> torch.Tensor:
        loss = chunked(*args, **kwargs)
        if not state["validating"]:
            steps.micro_loss(loss)
        return loss

    def validate_fn(fabric: Any, model: Any, loader: Any, eval_args: Any, verbose: bool = True) -> torch.Tensor:
        state["validating"] = True
        try:
            value = validate(fabric, model, loader, eval_args, verbose=False)
        finally:
            state["validating"] = False
        if not verbose:  # LitGPT's two-batch sanity check before training, not an evaluation
            return value
        loss = float(value)
        steps.eval_curve.append([steps.count, loss])
        print(f"eval at step {steps.count}/{train['max_steps']}  eval_loss {loss:.4f}", flush=True)
        if not math.isfinite(loss):
            steps.diverged = {"step": steps.count, "metric": "eval_loss", "value": str(loss)}
            raise Stop("non-finite eval loss")
        if state["best"] is None or loss < state["best"] - train["early_stopping_min_delta"]:
            state["best"], state["bad"] = loss, 0
        else:
            state["bad"] += 1
        if train["early_stopping_patience"] > 0 and state["bad"] >= train["early_stopping_patience"]:
            state["stopped_at"] = steps.count
            raise Stop("early stopping")
        return value

    lit.chunked_cross_entropy, lit.validate = loss_fn, validate_fn
    lit.generate_example = lambda *args, **kwargs: None  # the harness evaluates with its own evaluators
    return state


def _loaders(fabric: Any, run_dir: Path, spec: Dict[str, Any], meter: StepMeter) -> tuple:
    """The training loader in the worker's explicit micro-batch order, and the held-out loader."""
    from torch.utils.data import DataLoader

    train = spec["train"]
    rows, heldout = _read_rows(run_dir / "train.jsonl"), _read_rows(run_dir / "heldout.jsonl")
    order = DataLoader(rows, batch_sampler=spec["order"], collate_fn=Collate(spec["pad_id"], meter, train["grad_accum"]))
    held = DataLoader(heldout or rows[: train["batch_size"]], batch_size=train["batch_size"],
                      collate_fn=Collate(spec["pad_id"], None, 1))
    return fabric.setup_dataloaders(order, held)


def _lora_model(
    fabric: Any, config: Any, hf: Dict[str, Any], spec: Dict[str, Any], source: Path
) -> Tuple[Any, Dict[str, int]]:
    """LitGPT's LoRA GPT on the checkpoint's weights, only LoRA trainable, set up by Fabric; and its parameter counts.

    Raises when LitGPT's converter left a base weight unmatched, or when the LoRA targets train another number of
    parameters than peft would on the Hugging Face model.
    """
    from litgpt.lora import GPT, mark_only_lora_as_trainable

    with fabric.init_module(empty_init=False):
        model = GPT(config)
    missing, unexpected = model.load_state_dict(load_hf_weights(source, config, spec["arch"], getattr(torch, spec["dtype"])),
                                                strict=False)
    if unexpected or any("lora_" not in key for key in missing):
        raise RuntimeError(f"LitGPT's converter left weights unmatched: missing {missing[:4]} unexpected {unexpected[:4]}")
    mark_only_lora_as_trainable(model)
    counts = {"trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
              "total_params": sum(p.numel() for p in model.parameters())}
    expected = peft_lora_params(hf, spec["lora"])
    if counts["trainable_params"] != expected:  # a target mapped wrong: the two frameworks would not train alike
        raise RuntimeError(f"lora: LitGPT's LoRA trains {counts['trainable_params']:,} parameters where peft trains "
                           f"{expected:,} on the same targets ({spec['lora']}); the target mapping is wrong")
    return fabric.setup_module(model), counts


def _optimizer(fabric: Any, model: Any, train: Dict[str, Any]) -> Tuple[Any, Any]:
    """AdamW over the trainable (LoRA) parameters, set up by Fabric, and its learning-rate schedule."""
    optimizer = fabric.setup_optimizers(torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=train["lr"], weight_decay=train["weight_decay"],
        betas=(0.9, 0.999), eps=1e-8, fused=train["optimizer"] == "adamw_torch_fused" or None))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(train["lr_scheduler"], train["warmup_steps"], train["max_steps"]))
    return optimizer, scheduler


def _fit_args(train: Dict[str, Any], held_batches: int) -> Tuple[Any, Any]:
    """LitGPT's TrainArgs and EvalArgs for ``fit``: the harness's steps and batches; LitGPT's saving and logging off."""
    from litgpt.args import EvalArgs, TrainArgs

    args = TrainArgs(save_interval=None, log_interval=10**9, global_batch_size=train["batch_size"] * train["grad_accum"],
                     micro_batch_size=train["batch_size"], lr_warmup_steps=train["warmup_steps"], epochs=10**9,
                     max_steps=train["max_steps"], max_seq_length=train["max_seq_len"])
    evaluate = EvalArgs(interval=train["eval_every"] or 10**9, max_iters=held_batches, initial_validation=False)
    return args, evaluate


def _trainer_settings(spec: Dict[str, Any], model: Any) -> Dict[str, Any]:
    """The stats' ``trainer_settings``: how LitGPT trained the cell (precision, optimizer, loss, LoRA layers)."""
    import litgpt

    train = spec["train"]
    return {"precision": PRECISION[spec["dtype"]], "optimizer_class": "AdamW",
            "optimizer_fused": train["optimizer"] == "adamw_torch_fused",
            "param_dtype": str(next(p for p in model.parameters() if p.requires_grad).dtype).replace("torch.", ""),
            "max_grad_norm": train["max_grad_norm"], "lr_scheduler_type": train["lr_scheduler"],
            "loss_reduction": "mean over each micro-batch's loss-bearing tokens, averaged over grad_accum",
            "lora_layers": {k: v for k, v in spec["lora"].items() if k not in ("r", "alpha", "dropout")},
            "litgpt_version": litgpt.__version__ if hasattr(litgpt, "__version__") else None}


def run(run_dir: Path) -> Dict[str, Any]:
    """Train as ``spec.json`` says, write the merged Hugging Face folder; return the stats (also in stats.json)."""
    import lightning as L
    import litgpt.finetune.lora as lit

    spec = json.loads((run_dir / "spec.json").read_text())
    train, source, device = spec["train"], Path(spec["checkpoint"]), spec["device"]
    hf = json.loads((source / "config.json").read_text())
    config = lit_config(hf, spec["arch"], spec["lora"])
    memory = MemoryMeter(device)
    fabric = L.Fabric(accelerator=device, devices=1, precision=PRECISION[spec["dtype"]], loggers=[])
    fabric.seed_everything(train["seed"], verbose=False)
    model, counts = _lora_model(fabric, config, hf, spec, source)
    optimizer, scheduler = _optimizer(fabric, model, train)
    meter = StepMeter(**spec["meter"])
    if device == "cuda":
        meter.sync = torch.cuda.synchronize
    loader, held = _loaders(fabric, run_dir, spec, meter)
    after_load = memory.snapshot()
    steps = Steps(fabric, model, optimizer, spec, meter)
    state = _patch_fit(steps, spec)
    args, evaluate = _fit_args(train, len(held))
    memory.reset_peak()
    meter.train_begin()
    began = time.perf_counter()
    try:
        lit.fit(fabric, model, steps, scheduler, loader, held, 1, source, run_dir, args, evaluate, None)
    except Stop as stop:
        print(f"training stopped at step {steps.count}: {stop}", flush=True)
    train_s = time.perf_counter() - began
    peak = memory.peak()
    save_merged(getattr(model, "module", model), config, spec["arch"], source, Path(spec["out"]),
                bool(hf.get("tie_word_embeddings")))
    stats = {
        **counts,
        "loss_curve": steps.loss_curve, "eval_curve": steps.eval_curve, "stopped_early_at_step": state["stopped_at"],
        "diverged": steps.diverged, "optimizer_steps": steps.count,
        "trainer_settings": _trainer_settings(spec, model),
        "measured": {"meter": meter.summary(), "after_load": after_load, "train_peak": peak, "nvml": memory.nvml,
                     "train_s": train_s},
    }
    write_json_atomic(run_dir / "stats.json", stats)
    return stats


def main(argv: List[str]) -> int:
    """Entry point: ``python -m harness.frameworks.litgpt_runner RUN_DIR``."""
    run(Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
