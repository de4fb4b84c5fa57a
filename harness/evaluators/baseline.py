"""Baselines: every base model scored once without training; every cell reports its delta.

Where the baseline is computed: in the worker of whichever cell first needs it, on the
model that cell has just loaded -- after quantization and adapter set-up, before
training -- with the adapter switched off (``disable_adapter``; a fresh LoRA/DoRA adapter
is an identity anyway, since B = 0). So a 4-bit cell's base is the same 4-bit model its
adapter trains on, no second copy of the model is ever loaded, and no separate
"baseline cell" has to be scheduled. Random-number state and train/eval mode are
restored afterwards (lm-eval reseeds every generator), so a cell trains identically
whether or not it computed the baseline.

Cached under ``<cache>/baselines/<model>-<quant>-<evaluator>-<hash>/baseline.json``,
keyed by everything that fixes the base score: the model config (and the tiny model's
build key), quantization, the evaluator's name and config block, what the evaluator
reports as its data identity (held-out tokens; lm-eval version and local MMLU files),
device and library versions. An exclusive file lock per key makes concurrent workers
wait for the one computing it, so a key is never scored twice; the result is written
atomically. Delta rows: ``<metric>_base`` (base value and stderr) and ``<metric>_delta``
= cell - base, with stderr sqrt(se_cell^2 + se_base^2) -- an upper bound, as the pairing
of the same questions is ignored.
"""

from __future__ import annotations

import math
import random
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from harness.files import file_lock, read_json, stable_digest, within, write_json_atomic
from harness.seams import EvalContext, ModelView
from harness.store.records import metric_row

BASELINE_VERSION = 1
"""Bump when how a baseline is computed changes, so stale entries are not reused."""
FILE = "baseline.json"
LIBRARIES = ("torch", "transformers", "peft", "bitsandbytes")


def device_label(device: str) -> str:
    """cpu, or cuda:<GPU name>: numerics differ between devices, so they key baselines apart."""
    if device != "cuda":
        return device
    import torch

    return f"cuda:{torch.cuda.get_device_name(0)}"


def identity(cfg: Any, name: str, evaluator: Any, ctx: EvalContext, device: str) -> Optional[Dict[str, Any]]:
    """Everything that fixes the base model's score under ``name``; None if the evaluator cannot say."""
    data_identity = getattr(evaluator, "baseline_identity", None)
    if data_identity is None:  # a plug-in evaluator that does not declare its inputs gets no baseline
        return None
    from harness.benchmarks.checks import generation_block
    from harness.store.environment import library_versions

    model = asdict(cfg.model)
    if cfg.model.tiny:
        from harness.models.tiny import tiny_model_key

        model["build_key"] = tiny_model_key(cfg.model)
    versions = library_versions()
    block = getattr(cfg.eval, name)
    return {
        "version": BASELINE_VERSION,
        "model": model,
        "quant": asdict(cfg.quant) if cfg.quant.mode != "none" else {"mode": "none"},
        "evaluator": name,
        "config": generation_block(name, asdict(block)) if block is not None else None,  # judge-only keys never regenerate
        "data": data_identity(ctx),
        "device": device_label(device),
        "libraries": {lib: versions.get(lib) for lib in LIBRARIES},
    }


def folder_for(cache_dir: Path, ident: Dict[str, Any]) -> Path:
    """Cache folder of one baseline: readable prefix plus a hash of the identity."""
    digest = stable_digest(ident, 12)
    model, quant = ident["model"]["name"], ident["quant"]["mode"]
    folder = Path(cache_dir).expanduser() / "baselines" / f"{model}-{quant}-{ident['evaluator']}-{digest}"
    return within(folder, Path(cache_dir).expanduser())  # the model name is a config value: it must not lead out


Rows = List[Dict[str, Any]]


def cached_or_compute(
    folder: Path, ident: Dict[str, Any], compute: Callable[[Path], Rows], cell_id: str
) -> Tuple[Dict[str, Any], bool]:
    """(baseline entry, computed here): read the cached entry, or compute it under the key's lock.

    The entry is checked again after taking the lock: the usual case for a waiting worker
    is that the one it waited for has just written it.
    """
    entry = read_json(folder / FILE)
    if entry is not None:
        return entry, False
    folder.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(folder.with_name(folder.name + ".lock")):
        entry = read_json(folder / FILE)
        if entry is not None:
            return entry, False
        started = time.perf_counter()
        rows = compute(folder)
        wall = time.perf_counter() - started
        entry = {"identity": ident, "rows": rows, "computed_by": cell_id, "wall_s": wall, "created": time.time()}
        write_json_atomic(folder / FILE, entry)
    return entry, True


def _rng_state() -> Dict[str, Any]:
    import numpy as np
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Dict[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


@contextmanager
def untrained(view: ModelView) -> Iterator[ModelView]:
    """The view with any adapter switched off, in eval mode; mode and RNG state restored on exit."""
    import torch

    model = view.model
    training = bool(getattr(model, "training", False))
    state = _rng_state()
    try:
        import peft

        switch_off = model.disable_adapter() if isinstance(model, peft.PeftModel) else nullcontext()
    except ImportError:
        switch_off = nullcontext()
    model.eval()
    try:
        with switch_off, torch.no_grad():
            yield view
    finally:
        model.train(training)
        _set_rng_state(state)
        if view.device == "cuda":
            torch.cuda.empty_cache()  # evaluation activations must not count towards training memory


def compare(cell_rows: List[Dict[str, Any]], base_rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """``<metric>_base`` and ``<metric>_delta`` rows for every cell row the baseline also has."""
    base = {(r["evaluator"], r["task"], r["metric"]): r for r in base_rows}
    out = []
    for row in cell_rows:
        ref = base.get((row["evaluator"], row["task"], row["metric"]))
        if ref is None or row["value"] is None or ref["value"] is None:
            continue
        name = (row["evaluator"], row["task"])
        common = dict(higher_is_better=row["higher_is_better"], unit=row.get("unit"))
        out.append(metric_row(*name, f"{row['metric']}_base", ref["value"], stderr=ref["stderr"], n=ref["n"], **common))
        both = row["stderr"] is not None and ref["stderr"] is not None
        se = math.hypot(row["stderr"], ref["stderr"]) if both else None
        out.append(metric_row(*name, f"{row['metric']}_delta", row["value"] - ref["value"], stderr=se, n=row["n"], **common))
        if row.get("mmlu_dir"):  # a local MMLU folder's rows say so (see lmeval.rows_from_results)
            out[-2]["mmlu_dir"] = out[-1]["mmlu_dir"] = row["mmlu_dir"]
    return out


def score_baselines(
    cfg: Any, evaluators: Dict[str, Any], view: ModelView, ctx: EvalContext, cell_id: str, timings: Dict[str, float],
    may_compute: bool = True,
) -> Dict[str, Dict[str, Any]]:
    """name -> {rows, key, computed_here} for every evaluator that supports a baseline.

    Called on the loaded model (untrained, or a trained adapter that ``untrained`` switches
    off); times each as ``baseline_<name>`` (near zero when the cache already had it).
    ``may_compute=False`` (a loaded full fine-tune, whose base cannot be switched back on)
    only reads the cache: an evaluator without a cached baseline then gets no delta rows.
    """
    out: Dict[str, Dict[str, Any]] = {}
    for name, evaluator in evaluators.items():
        ident = identity(cfg, name, evaluator, ctx, view.device)
        if ident is None:
            continue
        mark = time.perf_counter()
        folder = folder_for(ctx.cache_dir, ident)
        if not may_compute and read_json(folder / FILE) is None:
            continue

        def compute(where: Path, evaluator: Any = evaluator) -> List[Dict[str, Any]]:
            with untrained(view) as base:
                return evaluator.evaluate(base, EvalContext(data=ctx.data, cell_dir=where, cache_dir=ctx.cache_dir))

        entry, computed = cached_or_compute(folder, ident, compute, cell_id)
        timings[f"baseline_{name}"] = time.perf_counter() - mark
        out[name] = {
            "rows": entry["rows"], "key": folder.name, "computed_here": computed, "computed_by": entry.get("computed_by")
        }
    return out
