"""The hf backend: transformers + bitsandbytes + peft + trl's SFTTrainer.

Data arrives already tokenized (input_ids and labels with -100 outside assistant turns),
so trl's own dataset preparation is skipped and both backends of a comparison train on
byte-identical batches.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

from harness.backends.base import CellContext, ModelView
from harness.backends.optional import hide_bitsandbytes
from harness.config.peft import lora_target_modules
from harness.config.schema import HarnessConfig
from harness.data.prepare import PreparedData
from harness.errors import ConfigError, HubUnavailableError
from harness.files import share_tree
from harness.measure.divergence import is_finite
from harness.measure.divergence import point as divergence_point
from harness.measure.meters import StepMeter
from harness.measure.steplog import log_line
from harness.measure.steplog import number as _number
from harness.models.random_weights import ensure_random_model
from harness.models.tiny import ensure_tiny_model

if TYPE_CHECKING:  # annotations only: this module imports transformers inside functions, to keep its import light
    from transformers import TrainerCallback


def _cuda_index() -> int:
    """The CUDA device this process trains on: a rank's own (torch.cuda.set_device by harness.worker.rank), else 0."""
    import torch

    return torch.cuda.current_device()


def resolve_dtype(name: str, device: str) -> Any:
    """torch dtype for ``model.dtype``: auto = bf16 on GPUs that have it, fp16 on older GPUs, fp32 on CPU."""
    import torch

    if name != "auto":
        return getattr(torch, name)
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def hub_error(cfg: HarnessConfig, exc: BaseException) -> HubUnavailableError:
    """One line that says the model needs the hub, and what to do about it."""
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return HubUnavailableError(
        f"model={cfg.model.name}: cannot load {cfg.model.hub_id}@{cfg.model.revision} - it needs the Hugging Face hub "
        f"({type(exc).__name__}: {reason[:160]}); run where the hub is reachable (gated models also need HF_TOKEN) "
        "or point model.hub_id at a local folder"
    )


# transformers' words when use_safetensors=True finds no safetensors file (local folder; hub repo)
NO_SAFETENSORS = re.compile(r"(no file named|does not appear to have a file named) \S*\.safetensors")


def pickle_refused(cfg: HarnessConfig) -> ConfigError:
    """One line for a model that has only pickle weights while model.allow_pickle is false."""
    return ConfigError(
        f"model.hub_id={cfg.model.hub_id}: has no .safetensors weights at {cfg.model.revision}, only pickle files, "
        "which can run code when loaded; use a safetensors revision or set model.allow_pickle=true if you trust them"
    )


class CountingCollator:
    """Wraps a collator and reports each micro-batch's samples and tokens to the meter."""

    def __init__(self, inner: Any, meter: StepMeter) -> None:
        self.inner = inner
        self.meter = meter

    def __call__(self, examples: List[Dict[str, Any]]) -> Dict[str, Any]:
        batch = self.inner(examples)
        labels = batch["labels"]
        tokens = int(batch["attention_mask"].sum()) if "attention_mask" in batch else int(labels.numel())
        # a label is shifted by one inside the model: the first position never carries loss
        loss_tokens = int((labels[:, 1:] != -100).sum())
        self.meter.on_batch(len(examples), tokens, loss_tokens, shape=tuple(batch["input_ids"].shape))
        return batch


def _print_line(line: str) -> None:
    """A line to the worker's stdout, which is its log file (the parent sets PYTHONUNBUFFERED)."""
    print(line, file=sys.stdout)


def _meter_callback(meter: StepMeter) -> TrainerCallback:
    """The step meter's clock: train begin, and each optimizer step's begin and end."""
    from transformers import TrainerCallback

    class MeterCallback(TrainerCallback):
        """Mark train begin and each optimizer step's begin and end on the meter."""

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            meter.train_begin()

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            meter.step_begin()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            meter.step_end()

    return MeterCallback()


def _divergence_watch() -> TrainerCallback:
    """A callback that stops at the first non-finite loss; its ``diverged`` says where (None while finite)."""
    from transformers import TrainerCallback

    class DivergenceWatch(TrainerCallback):
        """Stop at the first non-finite train or eval loss and remember where it was."""

        def __init__(self) -> None:
            self.diverged: Optional[Dict[str, Any]] = None

        def _check(self, state: Any, control: Any, values: Optional[Dict[str, Any]], metric: str) -> None:
            if self.diverged is not None or not values or metric not in values:
                return
            if not is_finite(values[metric]):
                self.diverged = divergence_point(state.global_step, metric, values[metric])
                control.should_training_stop = True

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            self._check(state, control, logs, "loss")

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any) -> None:
            self._check(state, control, metrics, "eval_loss")

    return DivergenceWatch()


def _early_stopping(cfg: HarnessConfig) -> TrainerCallback:
    """Early stopping that needs no checkpoints; its ``stopped_at`` is the step it stopped at (None if it never did).

    ``cfg.train``'s patience and min_delta are read at each evaluation, as the Trainer runs.
    """
    from transformers import TrainerCallback

    class EarlyStopping(TrainerCallback):
        """Stop after ``patience`` evaluations without an improvement of ``min_delta``."""

        def __init__(self) -> None:
            self.best: Optional[float] = None
            self.bad = 0
            self.stopped_at: Optional[int] = None

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any) -> None:
            loss = (metrics or {}).get("eval_loss")
            if loss is None:
                return
            if self.best is None or loss < self.best - cfg.train.early_stopping_min_delta:
                self.best, self.bad = loss, 0
            else:
                self.bad += 1
            if self.bad >= cfg.train.early_stopping_patience:
                control.should_training_stop = True
                self.stopped_at = state.global_step

    return EarlyStopping()


def _report(progress: Any = None, log: Optional[Callable[[str], None]] = None) -> TrainerCallback:
    """The progress report: step, max_steps and last loss to ``progress``, one ``log_line`` per log event to ``log``.

    Either may be None; a logged step's line carries the mean step time since the previous loss log.
    """
    from transformers import TrainerCallback

    class Report(TrainerCallback):
        """The training position to progress.json and one line per logged step to the worker's log."""

        def __init__(self) -> None:
            self.begun = self.last_at = time.perf_counter()
            self.last_step = 0

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.begun = self.last_at = time.perf_counter()
            self.last_step = state.global_step
            if progress is not None:
                progress.step(state.global_step, state.max_steps, force=True)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if progress is not None and not control.should_log:  # a logged step reports with its loss in on_log
                progress.step(state.global_step, state.max_steps)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            logs = logs or {}
            if progress is not None and "loss" in logs:
                progress.step(state.global_step, state.max_steps, _number(logs["loss"]))
            if log is None:
                return
            now = time.perf_counter()
            steps = state.global_step - self.last_step
            step_s = (now - self.last_at) / steps if "loss" in logs and steps > 0 else None
            if "loss" in logs:
                self.last_at, self.last_step = now, state.global_step
            log(log_line(state.global_step, state.max_steps, logs, step_s, now - self.begun))

    return Report()


def _callbacks(
    cfg: HarnessConfig, meter: StepMeter, progress: Any = None, log: Optional[Callable[[str], None]] = None
) -> list:
    """Trainer callbacks: the step meter, the divergence watch, early stopping that needs no checkpoints (when
    ``train.early_stopping_patience`` and ``train.eval_every`` are both set), and the progress report.

    ``progress`` (a ``harness.store.progress.ProgressWriter``) gets the step, max_steps and last loss
    (it throttles its writes to one a second); ``log`` gets one plain line per Trainer log event
    (``log_line``). Both come after the meter, outside the timed step.
    """
    callbacks = [_meter_callback(meter), _divergence_watch()]
    if cfg.train.early_stopping_patience > 0 and cfg.train.eval_every > 0:
        callbacks.append(_early_stopping(cfg))
    if progress is not None or log is not None:
        callbacks.append(_report(progress, log))
    return callbacks


SETTINGS_READ_BACK = ("optim", "learning_rate", "lr_scheduler_type", "warmup_steps", "weight_decay", "max_steps",
                      "per_device_train_batch_size", "gradient_accumulation_steps", "seed", "data_seed", "bf16", "fp16",
                      "gradient_checkpointing", "max_length", "packing", "padding_free", "loss_type",
                      "average_tokens_across_devices", "group_by_length")
"""The trainer arguments that decide the work done and its numerics, as the built trainer holds them."""


def trainer_settings(trainer: Any) -> Dict[str, Any]:
    """What a built trainer will actually use (a framework may change what it was given): its arguments,
    the model's parameter dtype, and after training the optimizer class it created (fused / foreach)."""
    args = trainer.args
    settings: Dict[str, Any] = {}
    for key in SETTINGS_READ_BACK:
        value = getattr(args, key, None)
        value = getattr(value, "value", value)  # enums (optim, lr_scheduler_type) as their names
        settings[key] = value if value is None or isinstance(value, (bool, int, float, str)) else str(value)
    settings["param_dtype"] = str(next(trainer.model.parameters()).dtype).replace("torch.", "")
    optimizer = getattr(getattr(trainer, "optimizer", None), "optimizer", getattr(trainer, "optimizer", None))
    if optimizer is not None:
        defaults = getattr(optimizer, "defaults", {})
        settings["optimizer_class"] = type(optimizer).__name__
        settings["optimizer_fused"] = bool(defaults.get("fused"))
        settings["optimizer_foreach"] = defaults.get("foreach")
    return settings


def _uncounted_eval(trainer: Any, collator: CountingCollator) -> None:
    """Held-out batches go through the plain collator: the Trainer has one ``data_collator`` for both loaders, and
    the meter must count only trained micro-batches (its queue would otherwise hand eval batches to later steps)."""
    make = trainer.get_eval_dataloader

    def eval_loader(*args: Any, **kwargs: Any) -> Any:
        trainer.data_collator = collator.inner
        try:
            return make(*args, **kwargs)
        finally:
            trainer.data_collator = collator

    trainer.get_eval_dataloader = eval_loader


def full_param_counts(model: Any) -> tuple[int, int]:
    """(trainable, total) parameters of a model without an adapter (a full fine-tune)."""
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad), total


class HFBackend:
    """transformers + peft + trl, one cell per instance."""

    def __init__(self, cfg: HarnessConfig, ctx: CellContext) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self.dtype = resolve_dtype(cfg.model.dtype, ctx.device)
        self.tokenizer: Any = None
        self.model: Any = None
        self.trainer: Any = None
        self.args: Any = None
        """The trainer's arguments when they had to exist before the model loaded (a sharded rank); else built in train."""
        self.trainer_notes: Dict[str, Any] = {}
        """Added to ``train.trainer_settings``: what a framework changed, and anything else it used."""
        if ctx.progress is not None and self.hides_bitsandbytes:  # a worker: this process runs this one cell
            hide_bitsandbytes(cfg)

    hides_bitsandbytes = True
    """Mark bitsandbytes absent in a worker of a cell that does not use it, before peft imports it and its kernel
    search fills the log (harness/backends/optional.py); a backend whose own library imports it sets False."""

    def _source(self) -> str:
        """Local folder of a tiny or random-weight model (built on first use), or the hub id / path."""
        if self.cfg.model.tiny:
            return str(ensure_tiny_model(self.cfg.model, self.ctx.cache_dir))
        if self.cfg.model.weights == "random":  # a checkpoint like the hub's: from_pretrained converts it as it would that
            return str(ensure_random_model(self.cfg.model, self.ctx.cache_dir, self.ctx.device))
        return str(self.cfg.model.hub_id)

    def _hub_kwargs(self) -> Dict[str, Any]:
        if self.cfg.model.tiny or self.cfg.model.weights == "random":  # a folder the harness wrote: no revision, no code
            return {}
        return {"revision": self.cfg.model.revision, "trust_remote_code": self.cfg.model.trust_remote_code}

    def load_tokenizer(self) -> Any:
        """Tokenizer with a pad token (eos when the model has none)."""
        from transformers import AutoTokenizer

        source = self._source()  # building a tiny or random-weight model is no hub problem: its errors are its own
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, **self._hub_kwargs())
        except OSError as exc:
            raise hub_error(self.cfg, exc) from exc
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.tokenizer = tokenizer
        return tokenizer

    def _quantization(self) -> Any:
        from transformers import BitsAndBytesConfig

        quant = self.cfg.quant
        if quant.mode == "none":
            return None
        if quant.mode == "8bit":
            return BitsAndBytesConfig(load_in_8bit=True)
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=quant.quant_type,
            bnb_4bit_use_double_quant=quant.double_quant,
            bnb_4bit_compute_dtype=self.dtype,
            # FSDP-QLoRA (Answer.AI/HF): 4-bit weights packed in the compute dtype so FSDP can flatten and shard them
            # with the adapter's; uint8 (the default) otherwise
            **({"bnb_4bit_quant_storage": self.dtype} if self.cfg.dist.strategy in ("fsdp", "deepspeed") else {}),
        )

    def load_model(self, weights: Optional[Path] = None) -> Dict[str, Any]:
        """Base model (quantized if asked), then the adapter; returns parameter counts.

        ``weights``: a trained cell's saved adapter (loaded onto the base) or whole model
        (loaded instead of the base), to evaluate it without training again.
        """
        import torch
        from transformers import AutoModelForCausalLM

        torch.manual_seed(self.cfg.train.seed)
        quantization = self._quantization()
        # a rank of an FSDP/ZeRO cell: the distributed state and the plugin's environment before from_pretrained, so
        # FSDP loads the weights on rank 0 only (cpu_ram_efficient_loading) and ZeRO-3 partitions them as they load
        sharded = weights is None and self.cfg.dist.strategy in ("fsdp", "deepspeed") and "LOCAL_RANK" in os.environ
        if sharded:
            self.args = self._sft_config()
        kwargs: Dict[str, Any] = {"dtype": self.dtype, **self._hub_kwargs()}
        if not self.cfg.model.tiny and not self.cfg.model.allow_pickle:
            kwargs["use_safetensors"] = True  # unpickling .bin weights can run code; model.allow_pickle opts in
        if quantization is not None:
            kwargs["quantization_config"] = quantization
            kwargs["device_map"] = {"": self.ctx.device if self.ctx.device == "cpu" else _cuda_index()}
        try:
            source = str(weights) if weights is not None and not self.cfg.adapter() else self._source()
            model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
        except OSError as exc:
            if kwargs.get("use_safetensors") and NO_SAFETENSORS.search(str(exc)):
                raise pickle_refused(self.cfg) from exc
            raise hub_error(self.cfg, exc) from exc
        if quantization is None and not sharded:  # sharded: accelerate places each rank's shard itself
            model = model.to(self.ctx.device if self.ctx.device == "cpu" else f"cuda:{_cuda_index()}")
        if self.cfg.adapter() and weights is not None:
            import peft

            model = peft.PeftModel.from_pretrained(model, str(weights))
            trainable, total = model.get_nb_trainable_parameters()
        elif self.cfg.adapter():
            model = self._attach_adapter(model, quantized=quantization is not None)
            trainable, total = model.get_nb_trainable_parameters()
        else:
            trainable, total = full_param_counts(model)
        self.model = model
        return {"trainable_params": int(trainable), "total_params": int(total)}

    def _attach_adapter(self, model: Any, quantized: bool) -> Any:
        import peft

        if quantized and self.cfg.dist.strategy in ("fsdp", "deepspeed"):
            # FSDP/ZeRO-3 QLoRA (trl's and the Answer.AI recipe): no fp32 upcast of the unquantized weights, whose mixed
            # dtypes inside one sharded unit would break flattening; only the inputs' gradients checkpointing needs
            if self.cfg.train.gradient_checkpointing:
                model.enable_input_require_grads()
        elif quantized:
            model = peft.prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=self.cfg.train.gradient_checkpointing
            )
        lora = self.cfg.lora
        config = peft.LoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=lora_target_modules(self.cfg.model.arch, lora),
            use_dora=self.cfg.peft.method == "dora",
            task_type="CAUSAL_LM",
        )
        return peft.get_peft_model(model, config)

    def _sft_config(self) -> Any:
        import torch
        from trl import SFTConfig

        train = self.cfg.train
        evaluate = train.eval_every > 0
        return SFTConfig(
            output_dir=str(self.ctx.cell_dir / "trainer"),
            max_steps=train.max_steps if train.max_steps > 0 else -1,
            num_train_epochs=train.epochs,
            learning_rate=train.lr,
            per_device_train_batch_size=train.batch_size,
            per_device_eval_batch_size=train.batch_size,
            gradient_accumulation_steps=train.grad_accum,
            warmup_steps=train.warmup_steps,
            weight_decay=train.weight_decay,
            max_length=train.max_seq_len,
            seed=train.seed,
            data_seed=train.seed,
            optim=train.optimizer,
            lr_scheduler_type=train.lr_scheduler,
            gradient_checkpointing=train.gradient_checkpointing,
            bf16=self.ctx.device == "cuda" and self.dtype == torch.bfloat16,
            fp16=self.ctx.device == "cuda" and self.dtype == torch.float16,
            use_cpu=self.ctx.device == "cpu",
            logging_steps=1,
            # the filter logs a NaN/inf step loss as the window's average (0.0 right after a log):
            # divergence must show in the logs, where DivergenceWatch sees it
            logging_nan_inf_filter=False,
            eval_strategy="steps" if evaluate else "no",
            eval_steps=train.eval_every if evaluate else None,
            save_strategy="no",
            report_to=[],
            disable_tqdm=True,
            dataloader_num_workers=0,
            remove_unused_columns=False,
            dataset_kwargs={"skip_prepare_dataset": True},
            **self._dist_args(),
        )

    def _dist_args(self) -> Dict[str, Any]:
        """Trainer arguments of ``dist``: accelerate's FSDP or DeepSpeed plugin as transformers builds it (none for one
        process; DDP needs none beyond torchrun's environment)."""
        from harness.backends.dist import trainer_args

        return trainer_args(self.cfg, quantized=self.cfg.quant.mode != "none")

    def train(self, data: PreparedData, meter: StepMeter) -> Dict[str, Any]:
        """SFTTrainer over the pre-tokenized sets; returns the loss curve and stop reason."""
        import torch
        from datasets import Dataset
        from transformers.trainer_callback import PrinterCallback
        from trl import SFTTrainer
        from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

        if self.ctx.device == "cuda":
            meter.sync = torch.cuda.synchronize
        columns = lambda rows: [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows]  # noqa: E731
        collator = CountingCollator(DataCollatorForLanguageModeling(pad_token_id=self.tokenizer.pad_token_id), meter)
        first = os.environ.get("RANK", "0") == "0"  # of several ranks, rank 0 logs the (all-reduced) steps
        callbacks = _callbacks(self.cfg, meter, getattr(self.ctx, "progress", None), log=_print_line if first else None)
        trainer = SFTTrainer(
            model=self.model,
            args=self.args or self._sft_config(),
            train_dataset=Dataset.from_list(columns(data.train)),
            eval_dataset=Dataset.from_list(columns(data.heldout)) if self.cfg.train.eval_every > 0 else None,
            processing_class=self.tokenizer,
            data_collator=collator,
            callbacks=callbacks,
        )
        trainer.remove_callback(PrinterCallback)  # its raw dicts; Report prints one plain line per step instead
        _uncounted_eval(trainer, collator)
        self.trainer = trainer
        self._trainer_built(trainer)
        trainer.train()
        history = trainer.state.log_history
        early = next((cb for cb in callbacks if hasattr(cb, "stopped_at")), None)
        watch = next((cb for cb in callbacks if hasattr(cb, "diverged")), None)
        return {
            "loss_curve": [[h["step"], h["loss"]] for h in history if "loss" in h],
            "eval_curve": [[h["step"], h["eval_loss"]] for h in history if "eval_loss" in h],
            "stopped_early_at_step": getattr(early, "stopped_at", None),
            "diverged": getattr(watch, "diverged", None),
            "optimizer_steps": trainer.state.global_step,
            "trainer_settings": {**trainer_settings(trainer), **self.trainer_notes},
        }

    def _trainer_built(self, trainer: Any) -> None:
        """Hook: the trainer is built and about to train (a subclass checks or forces what it will use).

        A dist cell checks that accelerate set up the strategy it asked for (it falls back to DDP silently)."""
        if self.cfg.dist.enabled():
            from harness.backends.dist import check_strategy

            self.trainer_notes["dist"] = check_strategy(self.cfg, trainer)

    def model_view(self) -> ModelView:
        """The trained model (adapter applied, not merged) in eval mode."""
        self.model.eval()
        return ModelView(model=self.model, tokenizer=self.tokenizer, device=self.ctx.device, name=self.cfg.model.name)

    def save_weights(self, cell_dir: Path) -> Optional[Path]:
        """Save what evaluating this cell later needs: the adapter, or the whole model with run.keep_weights
        (a dist cell with evaluators keeps it too: its evaluation runs on the saved weights).

        On several ranks every rank calls this: the Trainer gathers sharded weights (a collective) and rank 0 writes."""
        dist = self.cfg.dist.enabled()
        if self.cfg.adapter():
            folder = cell_dir / "adapter"
        elif self.cfg.run.keep_weights or (dist and self.cfg.eval.enabled()):
            folder = cell_dir / "model"
        else:
            return None  # a full fine-tune is the whole model: kept only when asked
        if dist:
            self.trainer.save_model(str(folder))  # FULL_STATE_DICT under FSDP/ZeRO-3; written by the main process only
            if not self.trainer.is_world_process_zero():
                return folder
            (folder / "training_args.bin").unlink(missing_ok=True)  # a pickle nothing loads: weights folders hold none
        else:
            self.model.save_pretrained(folder)
        if not self.cfg.adapter():
            self.tokenizer.save_pretrained(folder)
        share_tree(folder)  # safetensors writes 0600 whatever the umask; a team shares these folders
        return folder
