"""``python -m harness.data check PATH [overrides]``: what a cell would train on, without training.

    python -m harness.data check data.jsonl
    python -m harness.data check data/ data.format=sharegpt data.on_error=skip model=tiny-mistral
    python -m harness.data check data.hub_id=tatsu-lab/alpaca data.hub_split=train

Prints the detected format, record counts, invalid records by reason, drops per filter,
the split, token-length percentiles (p50/p95/max) under the model's tokenizer and chat
template, and two rendered training examples with the trained tokens marked. Takes the
same ``key=value`` overrides as ``python -m harness`` (default model: tiny-llama).
Exit status: 0 usable, 1 data problem, 2 bad arguments or config.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List

from harness.config.compose import compose
from harness.errors import ConfigError, HarnessError

USAGE = "usage: python -m harness.data check PATH [key=value ...]   (or data.hub_id=ID instead of PATH)"
MARK_OPEN, MARK_CLOSE = "\u27e6", "\u27e7"


def _quote(value: str) -> str:
    """A Hydra override value that survives spaces, commas and quotes in paths."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def list_problems(data: Any) -> int:
    """Print every invalid record (up to the shown limit) and counts by reason; return how many."""
    from harness.data.load import load_conversations

    loaded = load_conversations(dataclasses.replace(data, on_error="skip"))
    log = loaded.problems
    if log.total:
        print(f"invalid     {log.total} record(s): " + ", ".join(f"{k} {v}" for k, v in sorted(log.counts.items())))
        for message in log.messages:
            print(f"  {message}")
        if log.total > len(log.messages):
            print(f"  ... and {log.total - len(log.messages)} more")
    return log.total


def marked(tokenizer: Any, ids: List[int], mask: List[bool]) -> str:
    """Decoded text with each run of trained tokens between the marks."""
    out, start = [], 0
    for end in range(1, len(ids) + 1):
        if end == len(ids) or mask[end] != mask[start]:
            text = tokenizer.decode(ids[start:end])
            out.append(f"{MARK_OPEN}{text}{MARK_CLOSE}" if mask[start] else text)
            start = end
    return "".join(out)


def _split_line(name: str, split: Dict[str, Any]) -> str:
    """One line of token statistics for a split."""
    drops = ", ".join(
        f"{k.replace('dropped_', 'dropped ').replace('_', ' ')} {v}"
        for k, v in split.items()
        if k.startswith("dropped") and v
    )
    return (
        f"{name:<11} {split['examples']} examples, {split['tokens']} tokens, {split['loss_tokens']} trained; "
        f"truncated {split['truncated']}" + (f"; {drops}" if drops else "")
    )


def near_duplicate_note(cfg: Any, stats: Dict[str, Any]) -> str:
    """What the near-duplicate search found, and whether it dropped them ("" when there was no search)."""
    clusters, extra = stats.get("near_duplicate_clusters"), stats.get("near_duplicates")
    if clusters is None or extra is None:  # synthetic rows, or a record written before these were counted
        return ""
    filters = cfg.data.filters
    if not clusters:
        return f"  (no near-duplicates at cosine > {filters.near_dedup_threshold})"
    found = f"{extra + clusters} examples in {clusters} near-duplicate cluster{'s' if clusters > 1 else ''}"
    if filters.near_dedup:
        return f"  ({found}: dropped {extra}, kept the first of each)"
    return f"  ({found}: kept, data.filters.near_dedup=false; each cluster stays in one split)"


def report(cfg: Any, stats: Dict[str, Any]) -> None:
    """The human summary of a prepared data set."""
    fmt = (
        stats["format"]
        if isinstance(stats["format"], str)
        else ", ".join(f"{k}: {v}" for k, v in stats["format"].items())
    )
    print(f"format      {fmt} ({'detected' if stats['format_detected'] else 'data.format'})")
    print(
        f"records     {stats['records']} read, {stats['valid']} valid, {sum(stats['invalid'].values())} invalid "
        f"(data.on_error={stats['on_error']})"
    )
    print("filters     " + ", ".join(f"{k} -{v}" for k, v in stats["filtered"].items()) + near_duplicate_note(cfg, stats))
    pii = stats["pii_scrubbed"]
    print("pii         " + ("off" if pii is None else ", ".join(f"{k} {v}" for k, v in pii.items())))
    split = stats["split_examples"]
    print(
        f"split       {stats['kept']} kept -> train {split['train']} / validation {split['validation']} "
        f"/ test {split['test']} (data.split_seed {stats['split_seed']})"
    )
    lengths = stats["token_lengths"]
    print(
        f"tokens      {cfg.model.name} tokenizer, {stats['chat_template']} chat template, loss on {stats['loss_on']}: "
        f"p50 {lengths['p50']}, p95 {lengths['p95']}, max {lengths['max']} "
        f"(before truncation to {stats['max_seq_len']})"
    )
    for name in ("train", "validation", "test"):
        print(_split_line(name, stats[name]))
    if stats["max_examples"] is not None:
        print(
            f"            data.max_examples={stats['max_examples']}: {stats['train']['examples']} of "
            f"{stats['train']['available']} training examples used"
        )
    print(f"cache       {stats['cache']['key']} ({'reused' if stats['cache']['hit'] else 'written'})")


def show_examples(tokenizer: Any, data: Any, count: int = 2) -> None:
    """The first training examples as the model sees them, trained tokens marked."""
    train = data.splits["train"]
    where = data.stats.get("where", {}).get("train", [])
    for k in range(min(count, len(train))):
        lo, hi = int(train.offsets[k]), int(train.offsets[k + 1])
        origin = f" ({where[k]})" if k < len(where) else ""
        print(f"\n--- training example {k + 1}{origin}; trained tokens are between {MARK_OPEN} {MARK_CLOSE}")
        print(marked(tokenizer, train.ids[lo:hi].tolist(), train.mask[lo:hi].tolist()))


def load_tokenizer(cfg: Any) -> Any:
    """The cell's tokenizer, loaded by the configured backend exactly as a worker would."""
    from harness.config import registry
    from harness.seams import CellContext

    cache_dir = Path(cfg.run.cache_dir).expanduser()
    ctx = CellContext(cell_dir=Path(tempfile.mkdtemp(prefix="harness-data-check-")), cache_dir=cache_dir, device="cpu")
    backend = registry.load("framework.backend", cfg.framework.backend, registry.BACKENDS)(cfg, ctx)
    return backend.load_tokenizer()


def check(args: List[str]) -> int:
    """The check command; returns the exit status."""
    from harness.data.prepare import prepare_data

    overrides = [a for a in args if "=" in a]
    paths = [a for a in args if "=" not in a]
    if len(paths) > 1 or (not paths and not any(o.startswith("data.hub_id=") for o in overrides)):
        print(USAGE, file=sys.stderr)
        return 2
    if paths:
        overrides.insert(0, f"data.path={_quote(paths[0])}")
    cfg = compose(overrides)
    print(f"data check  {cfg.data.hub_id or Path(cfg.data.path).expanduser()}")
    invalid = 0 if cfg.data.hub_id else list_problems(cfg.data)
    if invalid and cfg.data.on_error == "fail":
        print(
            "error: invalid records with data.on_error=fail; a cell would stop here (data.on_error=skip drops them)",
            file=sys.stderr,
        )
        return 1
    tokenizer = load_tokenizer(cfg)
    data = prepare_data(
        cfg.data, tokenizer, cfg.train.max_seq_len, cfg.data.split_seed, cache_dir=Path(cfg.run.cache_dir).expanduser(),
        quiet=True,  # report() says the same, in more lines
    )
    report(cfg, data.stats)
    show_examples(tokenizer, data)
    return 0


def main(argv: List[str]) -> int:
    """Entry point: dispatch the subcommand, print HarnessErrors in one line."""
    from harness import require_installed

    require_installed()
    if "-h" in argv[1:] or "--help" in argv[1:]:
        print(f"{USAGE}\n\n{__doc__.strip()}")
        return 0
    if len(argv) < 2 or argv[1] != "check":
        print(USAGE, file=sys.stderr)
        return 2
    try:
        return check(argv[2:])
    except BrokenPipeError:  # output piped into head: stop quietly
        sys.stdout = open(os.devnull, "w")
        return 0
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
