"""The generation benchmarks' files: parent-side checks, digests, and what a result depends on.

The tables tell ``harness.store.identity.eval_keys`` which files a generation result depends on and which
settings only matter to the judge (changing a judge prompt re-judges, it does not regenerate); the
``check_*`` functions are the parent-side file checks registered in
``harness.config.registry.EVALUATOR_CHECKS``. Light: no torch, no judge client.
"""

from __future__ import annotations

import csv
import functools
import hashlib
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from harness.config.generation import AlpacaEvalConfig, DomainEvalConfig, MtBenchEvalConfig
from harness.config.names import require
from harness.errors import ConfigError

GENERATION_INPUTS: Dict[str, Dict[str, Optional[str]]] = {
    "mt_bench": {"questions": "mt_bench_question.jsonl"},
    "alpaca_eval": {"references": None, "instructions": None},
    "domain": {"path": None},
}
"""evaluator -> {block key of an input file: shipped asset used when the key is null (None = no file then)}."""
JUDGE_ONLY: Dict[str, Tuple[str, ...]] = {
    "mt_bench": ("references", "judge_prompts"),
    "alpaca_eval": ("judge_prompt", "difficulty"),
}
"""Block keys that only the judge reads: left out of the generation result's key."""
ALPACA_HUB_ID = "hub:tatsu-lab/alpaca_eval/alpaca_eval_gpt4_baseline.json"


@functools.lru_cache(maxsize=64)
def _digest(stamp: Tuple[Tuple[str, int, int], ...]) -> str:
    """sha256 (16 hex) of the files' names and bytes; ``stamp`` (path, size, mtime) keys the memo."""
    digest = hashlib.sha256()
    for path, _, _ in stamp:
        digest.update(Path(path).name.encode() + b"\0" + Path(path).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def path_digest(path: Path) -> str:
    """Content digest of a file, or of a data folder's files (as the data loader picks them)."""
    path = Path(path).expanduser()
    files = [path]
    if path.is_dir():
        from harness.data.load import source_files

        files = source_files(path)
    return _digest(tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files))


def generation_block(name: str, settings: Dict[str, Any]) -> Dict[str, Any]:
    """The block without its judge-only keys: what the generated answers depend on."""
    if name not in JUDGE_ONLY or not isinstance(settings, dict):
        return settings
    return {k: v for k, v in settings.items() if k not in JUDGE_ONLY.get(name, ())}


def input_digests(name: str, settings: Dict[str, Any]) -> Dict[str, str]:
    """Block key -> content digest of each input file of a generation evaluator ({} for other evaluators)."""
    from harness.benchmarks.inputs import ASSETS

    out: Dict[str, str] = {}
    if not isinstance(settings, dict):
        return out
    for key, asset in GENERATION_INPUTS.get(name, {}).items():
        value = settings.get(key)
        if not value and asset is None:
            if name == "alpaca_eval" and key == "references":
                out[key] = ALPACA_HUB_ID
            continue
        path = Path(value).expanduser() if value else ASSETS / asset
        try:
            out[key] = path_digest(path)
        except OSError:  # an old record's file that is gone: the key can only name it
            out[key] = f"missing:{path}"
    return out


def _exists(key: str, path: Optional[str]) -> None:
    if path is not None:
        require(Path(path).expanduser().is_file(), key, path, "no such file")


def check_judge_prompts(path: Optional[str]) -> None:
    """A judge_prompts.jsonl parses and every row has a name and a prompt_template."""
    from harness.benchmarks.inputs import JUDGE_PROMPTS, read_jsonl, resolve

    key = "eval.mt_bench.judge_prompts"
    for number, row in enumerate(read_jsonl(resolve(path, JUDGE_PROMPTS), key), 1):
        require("name" in row and "prompt_template" in row, key, path, f"line {number} needs name and prompt_template")


def check_mt_bench(block: MtBenchEvalConfig, cache_dir: str) -> None:
    """Question, reference and judge-prompt files exist and parse."""
    from harness.benchmarks.inputs import MT_BENCH_REFERENCES, read_jsonl, resolve

    _exists("eval.mt_bench.questions", block.questions)
    _exists("eval.mt_bench.references", block.references)
    _exists("eval.mt_bench.judge_prompts", block.judge_prompts)
    from harness.benchmarks.inputs import mt_bench_questions

    mt_bench_questions(block.questions, block.limit)
    read_jsonl(resolve(block.references, MT_BENCH_REFERENCES), "eval.mt_bench.references")
    check_judge_prompts(block.judge_prompts)


def alpaca_items(block: AlpacaEvalConfig) -> List[Dict[str, Any]]:
    """The reference rows to answer, in order, each with its position in the reference set as ``index``.

    With ``instructions`` given, each of its rows is matched to the reference with the same
    instruction text; one that has none is a one-line error naming file and row.
    """
    from harness.benchmarks.inputs import alpaca_references, read_records

    references = [{**row, "index": i} for i, row in enumerate(alpaca_references(block.references))]
    if block.instructions is None:
        items = references
    else:
        key = "eval.alpaca_eval.instructions"
        by_text: Dict[str, Dict[str, Any]] = {}
        for row in references:
            by_text.setdefault(row["instruction"], row)
        items = []
        for number, row in enumerate(read_records(Path(block.instructions).expanduser(), key), 1):
            text = row.get("instruction")
            require(isinstance(text, str), key, block.instructions, f"item {number} needs a string instruction")
            require(text in by_text, key, block.instructions,
                     f"item {number} has no reference with the same instruction in eval.alpaca_eval.references")
            items.append(by_text[text])
    return items[: block.limit] if block.limit else items


def check_alpaca_eval(block: AlpacaEvalConfig, cache_dir: str) -> None:
    """Local reference/instruction files parse and match; the difficulty CSV has its columns. The hub is the worker's."""
    _exists("eval.alpaca_eval.references", block.references)
    _exists("eval.alpaca_eval.instructions", block.instructions)
    _exists("eval.alpaca_eval.judge_prompt", block.judge_prompt)
    _exists("eval.alpaca_eval.difficulty", block.difficulty)
    if block.references is not None:
        alpaca_items(block)
    else:  # hub references are fetched (and matched) by the worker; here only: can it get them at all?
        _check_hub_references()
    if block.difficulty is not None:
        with open(Path(block.difficulty).expanduser(), newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), [])
        missing = {"index", "instruction_difficulty"} - set(header)
        require(not missing, "eval.alpaca_eval.difficulty", block.difficulty, f"CSV lacks column(s) {', '.join(sorted(missing))}")


def _check_hub_references() -> None:
    """One line now, instead of a failed cell later, when the hub reference file is neither cached nor reachable."""
    import os

    from huggingface_hub import try_to_load_from_cache

    from harness.benchmarks.inputs import ALPACA_HUB
    from harness.models.hub import hub_reachable

    if isinstance(try_to_load_from_cache(ALPACA_HUB["repo_id"], ALPACA_HUB["filename"], repo_type="dataset"), str):
        return
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    require(hub_reachable(endpoint), "eval.alpaca_eval.references", "null",
             f"AlpacaEval 2.0's reference outputs ({ALPACA_HUB['repo_id']}/{ALPACA_HUB['filename']}) need the hub, "
             f"which is not reachable from here ({endpoint}) and they are not in the local cache; "
             "give a local file (a JSON list of instruction/output)")


def check_domain(block: DomainEvalConfig, cache_dir: str) -> None:
    """The domain file reads as chat data (memoised per file state, as data.path is)."""
    from harness.config.data import DataConfig
    from harness.data.load import check_source
    from harness.errors import DataError

    try:
        check_source(DataConfig(path=block.path))
    except DataError as exc:
        raise ConfigError(f"eval.domain.path={block.path}: {exc}") from None
