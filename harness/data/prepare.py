"""From a data config to tokenized train, validation and test sets, with statistics.

Order matters and is fixed: read + validate -> PII scrub -> per-example filters -> exact
duplicates -> near-duplicate clusters -> split (cluster by cluster) -> tokenize. Nothing
before the split looks at more than one example except deduplication, which is what
keeps near-duplicates on one side. ``max_examples`` takes a prefix of the (rank-ordered)
training split after all of that, so 100 examples are a subset of 200 and every cell
of a data-size sweep is evaluated on the same validation split.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from harness.config.data import DataConfig
from harness.data import cache
from harness.data.dedup import near_duplicate_clusters
from harness.data.filters import drop_exact_duplicates, quality_filter, scrub_pii
from harness.data.load import Example, load_conversations, open_source
from harness.data.split import SPLITS, split_clusters
from harness.data.tokenize import TokenizedSplit, ensure_chat_template, tokenize_split
from harness.errors import DataError


@dataclass
class PreparedData:
    """Tokenized examples (input_ids, labels) and the statistics a record carries.

    ``heldout`` is the validation split (held-out loss, early stopping); ``test`` is kept
    for evaluators that must not see anything tuned on validation.
    """

    train: List[Dict[str, Any]]
    heldout: List[Dict[str, Any]]
    stats: Dict[str, Any] = field(default_factory=dict)
    test: List[Dict[str, Any]] = field(default_factory=list)
    splits: Dict[str, TokenizedSplit] = field(default_factory=dict)
    """The same data as flat arrays (all of the training split, before max_examples)."""


def _keep_cluster_heads(examples: List[Example], labels: np.ndarray) -> Tuple[List[Example], np.ndarray]:
    """First example of each near-duplicate cluster (file order), with its label."""
    seen, keep = set(), []
    for index, label in enumerate(labels.tolist()):
        if label not in seen:
            seen.add(label)
            keep.append(index)
    return [examples[i] for i in keep], labels[keep]


def select_examples(data: DataConfig, seed: int, source: Any = None) -> Tuple[Dict[str, List[Example]], Dict[str, Any]]:
    """Load, validate, filter, deduplicate and split; (examples per split, statistics)."""
    timings: Dict[str, float] = {}
    mark = time.perf_counter()
    loaded = load_conversations(data, source)
    timings["load"] = time.perf_counter() - mark
    examples = loaded.examples
    filters = data.filters
    pii = scrub_pii(examples) if filters.pii_scrub else None
    mark = time.perf_counter()
    examples, dropped = quality_filter(examples, filters)
    if filters.exact_dedup:
        examples, dropped["exact_duplicate"] = drop_exact_duplicates(examples)
    labels = near_duplicate_clusters([e.conversation for e in examples], filters.near_dedup_threshold, filters.embedder)
    sizes = np.bincount(labels) if len(labels) else np.zeros(0, dtype=np.int64)
    # every example has a label, a lone one too: only clusters of two or more hold near-duplicates
    clusters, near_duplicates = int((sizes > 1).sum()), int((sizes[sizes > 1] - 1).sum())
    if filters.near_dedup:
        before = len(examples)
        examples, labels = _keep_cluster_heads(examples, labels)
        dropped["near_duplicate"] = before - len(examples)
    timings["filter_dedup"] = time.perf_counter() - mark
    if not examples:
        raise DataError(f"{loaded.source}: every example was removed by the filters ({dropped}); relax data.filters.*")
    indices = split_clusters([e.conversation for e in examples], labels, data.val_fraction, data.test_fraction, seed)
    formats = sorted(set(loaded.formats.values()))
    stats = {
        "source": loaded.source,
        "format": formats[0] if len(formats) == 1 else loaded.formats,
        "format_detected": loaded.detected,
        "records": loaded.records,
        "valid": len(loaded.examples),
        "invalid": dict(loaded.problems.counts),
        "invalid_examples": loaded.problems.messages[:5],
        "on_error": data.on_error,
        "filtered": dropped,
        "pii_scrubbed": pii,
        "near_duplicate_clusters": clusters,
        "near_duplicates": near_duplicates,  # examples beyond each cluster's first: what near_dedup drops
        "kept": len(examples),
        "split_seed": seed,
        "split_examples": {name: len(indices[name]) for name in SPLITS},
        "timings_s": timings,
    }
    return {name: [examples[i] for i in indices[name]] for name in SPLITS}, stats


def _percentiles(splits: Dict[str, TokenizedSplit]) -> Dict[str, Optional[int]]:
    """p50/p95/max of the untruncated token lengths of every kept example."""
    lengths = np.concatenate([split.full_lengths for split in splits.values()])
    if not len(lengths):
        return {"p50": None, "p95": None, "max": None}
    return {"p50": int(np.percentile(lengths, 50)), "p95": int(np.percentile(lengths, 95)), "max": int(lengths.max())}


def build(
    data: DataConfig, tokenizer: Any, max_seq_len: int, seed: int, source: Any
) -> Tuple[Dict[str, TokenizedSplit], Dict[str, Any]]:
    """Select and tokenize every split; fail clearly when nothing trainable remains."""
    chosen, stats = select_examples(data, seed, source)
    mark = time.perf_counter()
    splits = {
        name: tokenize_split(
            tokenizer, [e.conversation for e in chosen[name]], max_seq_len, data.loss_on, data.overlong, data.on_error
        )
        for name in SPLITS
    }
    stats["timings_s"]["tokenize"] = time.perf_counter() - mark
    stats["token_lengths"] = _percentiles(splits)
    stats["where"] = {name: [chosen[name][int(k)].where for k in split.source[:2]] for name, split in splits.items()}
    for name in ("train", "validation"):
        if not len(splits[name]):
            counts = {k: v for k, v in splits[name].counts.items() if v}
            raise DataError(
                f"{stats['source']}: no {name} example has an assistant token left "
                f"within train.max_seq_len={max_seq_len} "
                f"({counts or 'the split is empty'}; data.overlong={data.overlong}, data.loss_on={data.loss_on})"
            )
    return splits, stats


def _cache_parts(
    data: DataConfig, tokenizer: Any, template: str, max_seq_len: int, seed: int, fingerprint: str
) -> Dict[str, Any]:
    """Everything that decides the cached splits (max_examples and the label do not).

    The path stays in the key although the content hash covers the data: the cached
    statistics name files and lines, which must be this copy's.
    """
    settings = {k: v for k, v in asdict(data).items() if k not in ("name", "max_examples")}
    return {
        "data": fingerprint,
        "settings": settings,
        "seed": seed,
        "tokenizer": cache.tokenizer_fingerprint(tokenizer),
        "template": template,
        "max_seq_len": max_seq_len,
    }


def data_line(stats: Dict[str, Any]) -> str:
    """One line of what the data became: records, invalid, each filter's drops, the split, examples trained on."""
    invalid = sum(stats["invalid"].values())
    dropped = {k: v for k, v in stats["filtered"].items() if v}
    train = stats.get("train", {})
    used = train.get("examples", stats["split_examples"]["train"])
    if stats.get("synthetic"):
        split = stats["split_examples"]
        return (
            f"data: synthetic, {stats['records']} rows of {stats['seq_len']} random tokens, all loss-bearing "
            f"(quality metrics meaningless); train {split['train']} / validation {split['validation']} "
            f"/ test {split['test']}; training on {used} examples"
        )
    return (
        f"data: {stats['records']} records, {invalid} invalid{' (skipped)' if invalid else ''}; "
        f"kept {stats['kept']}, dropped {sum(dropped.values())}"
        + (f" ({', '.join(f'{k} {v}' for k, v in dropped.items())})" if dropped else "")
        + f"; train {stats['split_examples']['train']} / validation {stats['split_examples']['validation']} "
        f"/ test {stats['split_examples']['test']}; training on {used} examples"
    )


def prepare_data(
    data: DataConfig, tokenizer: Any, max_seq_len: int, seed: int, cache_dir: Optional[Path] = None, quiet: bool = False
) -> PreparedData:
    """Prepared data for one cell: generated rows for data=synthetic (``harness.data.synthetic``), else read,
    filtered and tokenized, from the tokenized cache under ``cache_dir`` when an entry exists.

    Prints ``data_line`` (into the worker's log) unless ``quiet``: filters can drop most of a file.
    """
    template = ensure_chat_template(tokenizer)  # evaluators render prompts with it, synthetic data or not
    mark = time.perf_counter()
    if data.synthetic:  # token ids already, cheaper to draw than to cache: no key, no entry
        from harness.data import synthetic

        splits, stats = synthetic.build(data, tokenizer, max_seq_len, seed)
        key, hit, template = None, False, None
    else:
        source = open_source(data, cache_dir)
        key = cache.cache_key(_cache_parts(data, tokenizer, template, max_seq_len, seed, source.fingerprint()))
        root = Path(cache_dir).expanduser() / "tokenized" if cache_dir is not None else None
        splits, stats, hit = cache.cached(root, key, lambda: build(data, tokenizer, max_seq_len, seed, source))
    train, held, test = splits["train"], splits["validation"], splits["test"]
    stats.update(
        chat_template=template,
        loss_on="all" if data.synthetic else data.loss_on,
        overlong=None if data.synthetic else data.overlong,
        max_seq_len=max_seq_len,
        max_examples=data.max_examples,
        cache={"key": key, "hit": hit, "seconds": time.perf_counter() - mark},
        # dropped_* count the whole training split; examples, tokens and truncated count what is used
        train={**train.counts, **train.stats(data.max_examples), "available": len(train)},
        validation={**held.counts, **held.stats()},
        test={**test.counts, **test.stats()},
    )
    if not quiet:
        print(data_line(stats), flush=True)
    return PreparedData(
        train=train.rows(data.max_examples), heldout=held.rows(), test=test.rows(), stats=stats, splits=splits
    )
