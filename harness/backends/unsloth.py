"""The unsloth backend: Unsloth's FastLanguageModel, then the hf backend's SFT path, in Unsloth's own environment.

Unsloth pins older transformers/trl than the harness and patches them on import, so its cells run in
``.venvs/unsloth`` (``make setup-unsloth``; conf/framework/unsloth.yaml). Importing this module imports
unsloth first: the worker has imported only torch when it loads the backend class.

Everything but the model load is the hf backend's (same tokenizer, pre-tokenized rows, collator,
callbacks, meter, SFTTrainer), so the two frameworks train on identical batches. Unsloth changes some
trainer settings behind the caller's back (on CPU: ``adamw_torch`` becomes ``adamw_torch_fused``, bf16
is turned on when left unset); the cell's own settings are forced back on the SFTConfig right after
Unsloth's patched ``__post_init__`` changed them, and what the built trainer then uses is read back into
``train.trainer_settings``, with each change Unsloth had made (``unsloth_changed``).

On a machine without a GPU Unsloth 2026.10.9+ trains with stock transformers + PEFT + TRL plus a
chunked cross-entropy; what it cannot do there (8-bit loading, 4-bit where bitsandbytes' CPU kernels
refuse the model, other 4-bit settings than its own) ends the cell ``unsupported`` (UnsupportedError) naming the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

import unsloth  # noqa: F401  - before transformers, trl and peft (it patches them; it warns when it comes later)

from harness.backends.hf import NO_SAFETENSORS, HFBackend, full_param_counts, hub_error, pickle_refused
from harness.config.peft import lora_target_modules
from harness.errors import UnsupportedError


def on_cpu() -> bool:
    """True when Unsloth took its CPU path (no accelerator: stock transformers + PEFT + TRL)."""
    return getattr(unsloth, "DEVICE_TYPE", None) == "cpu"


class UnslothBackend(HFBackend):
    """Unsloth's FastLanguageModel + get_peft_model; training, evaluation and saving as the hf backend."""

    hides_bitsandbytes = False  # unsloth imports bitsandbytes itself, quantized or not

    def _check_supported(self) -> None:
        """An UnsupportedError naming the key for what Unsloth cannot do here."""
        quant = self.cfg.quant
        if quant.mode == "8bit" and on_cpu():
            raise UnsupportedError("quant.mode=8bit: Unsloth's CPU path has no 8-bit loading (it would silently load "
                              "16-bit weights); use quant.mode=none or 4bit, or framework=hf")
        if quant.mode == "4bit" and (quant.quant_type, quant.double_quant) != ("nf4", True) and on_cpu():
            key = "quant.quant_type" if quant.quant_type != "nf4" else "quant.double_quant"
            raise UnsupportedError(f"{key}: Unsloth's CPU path always quantizes nf4 with double quantization; "
                              f"it cannot honour quant_type={quant.quant_type} double_quant={quant.double_quant}")

    def load_model(self, weights: Optional[Path] = None) -> Dict[str, Any]:
        """The base through FastLanguageModel.from_pretrained (the cell's dtype, no gradient checkpointing unless
        asked), then get_peft_model with the cell's LoRA settings; a trained cell's weights load as the hf backend."""
        if weights is not None:
            return super().load_model(weights)  # evaluation of saved weights: plain transformers + peft
        import torch
        from unsloth import FastLanguageModel

        self._check_supported()
        torch.manual_seed(self.cfg.train.seed)
        kwargs: Dict[str, Any] = dict(self._hub_kwargs())
        if not self.cfg.model.tiny and not self.cfg.model.allow_pickle:
            kwargs["use_safetensors"] = True
        quantized = self.cfg.quant.mode == "4bit"
        try:
            model, _ = FastLanguageModel.from_pretrained(
                model_name=self._source(),
                max_seq_length=self.cfg.train.max_seq_len,
                dtype=self.dtype,
                load_in_4bit=quantized,
                load_in_8bit=self.cfg.quant.mode == "8bit",
                full_finetuning=not self.cfg.adapter(),
                use_gradient_checkpointing=bool(self.cfg.train.gradient_checkpointing),
                **kwargs,
            )
        except OSError as exc:
            if kwargs.get("use_safetensors") and NO_SAFETENSORS.search(str(exc)):
                raise pickle_refused(self.cfg) from exc
            raise hub_error(self.cfg, exc) from exc
        if quantized and not any(type(m).__name__ == "Linear4bit" for m in model.modules()):
            raise UnsupportedError("quant.mode=4bit: Unsloth loaded 16-bit weights instead (bitsandbytes' CPU 4-bit kernels "
                              f"refuse this model or machine: see the worker log); use quant.mode=none for {self.cfg.model.name}")
        self.trainer_notes["chunked_cross_entropy"] = bool(vars(model).get("_unsloth_cpu_chunked_ce", False))
        self.trainer_notes["unsloth_path"] = "cpu (stock transformers + peft + trl)" if on_cpu() else "accelerator"
        if self.cfg.adapter():
            lora = self.cfg.lora
            model = FastLanguageModel.get_peft_model(
                model,
                r=lora.r,
                lora_alpha=lora.alpha,
                lora_dropout=lora.dropout,
                target_modules=lora_target_modules(self.cfg.model.arch, lora),
                bias="none",
                use_gradient_checkpointing=bool(self.cfg.train.gradient_checkpointing),
                random_state=self.cfg.train.seed,
                use_dora=self.cfg.peft.method == "dora",
            )
            trainable, total = model.get_nb_trainable_parameters()
        else:
            trainable, total = full_param_counts(model)
        self.model = model
        return {"trainable_params": int(trainable), "total_params": int(total)}

    def _sft_config(self) -> Any:
        """The hf backend's SFTConfig, with the cell's optimizer and precision forced back where Unsloth's patched
        ``__post_init__`` changed them (each change is noted in ``train.trainer_settings.unsloth_changed``)."""
        import torch
        from transformers.training_args import OptimizerNames

        config = super()._sft_config()
        cuda = self.ctx.device == "cuda"
        wanted = {"optim": OptimizerNames(self.cfg.train.optimizer),
                  "bf16": cuda and self.dtype == torch.bfloat16, "fp16": cuda and self.dtype == torch.float16}
        changed = {}
        for key, value in wanted.items():
            had = getattr(config, key)
            if had != value:
                changed[key] = {"unsloth": getattr(had, "value", had), "forced": getattr(value, "value", value)}
                setattr(config, key, value)
        self.trainer_notes["unsloth_changed"] = changed
        return config

    def _trainer_built(self, trainer: Any) -> None:
        """Refuse to train with another precision than the cell's (accelerate reads it when the trainer is built)."""
        used = getattr(getattr(trainer, "accelerator", None), "mixed_precision", None)
        args = trainer.args
        wanted = "bf16" if args.bf16 else "fp16" if args.fp16 else "no"
        if used is not None and str(used) != wanted:
            raise UnsupportedError(f"model.dtype={self.cfg.model.dtype}: Unsloth's trainer runs mixed precision {used}, "
                              f"not the cell's {wanted}")
        self.trainer_notes["mixed_precision"] = str(used) if used is not None else None
