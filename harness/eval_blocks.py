"""Config blocks of the generation benchmarks (MT-Bench, AlpacaEval, domain sets) and their judge.

Kept out of ``harness.config`` so that module stays short; it imports these classes, so
this module must stay as light as it is (no torch, no judge client). The tables at the end
tell ``harness.identity.eval_keys`` which files a generation result depends on and which
settings only matter to the judge (changing a judge prompt re-judges, it does not
regenerate), and the ``check_*`` functions are the parent-side file checks registered in
``harness.registry.EVALUATOR_CHECKS``.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from harness.errors import ConfigError
from harness.names import require as _require

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
KEY_LIKE = re.compile(r"^(sk-|sk_|Bearer |ghp_|hf_)|^[A-Za-z0-9_\-]{40,}$")
"""Values that look like an API key rather than the name of the variable holding one."""


def _positive(key: str, value: Optional[float], optional: bool = False) -> None:
    if optional and value is None:
        return
    _require(value is not None and value > 0, key, value, "must be > 0" + (" (or null)" if optional else ""))


def _generation(prefix: str, block: Any) -> None:
    """Checks shared by the generation blocks: limit, max_new_tokens, batch_size."""
    _positive(f"{prefix}.limit", block.limit, optional=True)
    _positive(f"{prefix}.max_new_tokens", block.max_new_tokens)
    _positive(f"{prefix}.batch_size", block.batch_size)


@dataclass
class MtBenchEvalConfig:
    """MT-Bench (FastChat): two-turn answers generated in the worker, graded 1-10 by an LLM judge."""

    questions: Optional[str] = None
    """FastChat question.jsonl (question_id, category, turns); None = the 80 shipped questions."""
    references: Optional[str] = None
    """Reference answers for math/reasoning/coding (FastChat format); None = the shipped gpt-4 answers. Judge only."""
    judge_prompts: Optional[str] = None
    """FastChat judge_prompts.jsonl; None = the shipped single-v1 prompts. Judge only."""
    limit: Optional[int] = None
    """Answer only the first N questions; None = all. A limited score is for quick checks: not comparable with
    published numbers."""
    max_new_tokens: int = 1024
    """Longest answer per turn, in tokens (FastChat's default); answers that hit it are counted as cut off."""
    batch_size: int = 8
    """Prompts generated together (left-padded)."""
    seed: int = 0
    """Seeds sampling (writing/roleplay/stem/humanities use temperature > 0); same seed, same answers."""

    def __post_init__(self) -> None:
        _generation("eval.mt_bench", self)


@dataclass
class AlpacaEvalConfig:
    """AlpacaEval 2.0: single-turn answers generated in the worker, compared with a reference by an LLM judge."""

    instructions: Optional[str] = None
    """File of instruction rows (JSON list or JSONL, field ``instruction``), matched to the references by text;
    None = the reference set's own instructions."""
    references: Optional[str] = None
    """Reference outputs (instruction, output, generator, dataset); None = the hub's tatsu-lab/alpaca_eval
    alpaca_eval_gpt4_baseline.json (needs internet once)."""
    judge_prompt: Optional[str] = None
    """Judge prompt template; None = the shipped alpaca_eval_clf.txt (weighted_alpaca_eval_gpt4_turbo). Judge only."""
    difficulty: Optional[str] = None
    """CSV with columns index,instruction_difficulty for the length-controlled win rate; None = the minimal
    length-controlled fit without it. Judge only."""
    limit: Optional[int] = None
    """Answer only the first N instructions; None = all 805. A limited win rate is not comparable with the leaderboard."""
    max_new_tokens: int = 2048
    """Longest answer in tokens; long answers win more often, which the length-controlled win rate corrects."""
    batch_size: int = 8
    """Prompts generated together (left-padded)."""
    seed: int = 0
    """Seed set before each batch (generation is greedy; kept for models whose generation config samples)."""

    def __post_init__(self) -> None:
        _generation("eval.alpaca_eval", self)


@dataclass
class DomainEvalConfig:
    """A domain set of your own: greedy answers scored against reference answers (exact match, ROUGE-L, BLEU)."""

    path: str = ""
    """Any chat file (or folder) the data loader reads; the last assistant message of each conversation is the
    reference, everything before it the prompt."""
    limit: Optional[int] = None
    """Score only the first N conversations; None = all."""
    max_new_tokens: int = 256
    """Longest answer in tokens; keep it near the references' length, or BLEU pays for the rambling."""
    batch_size: int = 8
    """Prompts generated together (left-padded)."""

    def __post_init__(self) -> None:
        _require(bool(str(self.path).strip()), "eval.domain.path", self.path, "is required: a chat file of prompts and reference answers")
        _require(os.path.exists(os.path.expanduser(self.path)), "eval.domain.path", self.path, "no such file or folder")
        _generation("eval.domain", self)


@dataclass
class JudgeConfig:
    """The LLM judge of MT-Bench and AlpacaEval: any OpenAI-compatible server. Not an evaluator of its own."""

    base_url: Optional[str] = None
    """Server URL (``http://localhost:8000/v1`` for a local server); None = OpenAI's API."""
    model: str = "gpt-4"
    """Judge model name as the server knows it; scores from different judges are not comparable."""
    api_key_env: Optional[str] = "OPENAI_API_KEY"
    """Name of the environment variable holding the API key (never the key itself); None = no key (local servers)."""
    concurrency: int = 8
    """Judge requests in flight at once."""
    repeats: int = 1
    """Judge every item this many times (repeat index is part of the cache key) to measure judge noise."""
    max_usd: Optional[float] = None
    """Stop judging once the estimated cost reaches this many US dollars; None = no cap."""
    timeout_s: float = 120.0
    """Seconds per judge request before it is retried."""
    retries: int = 4
    """Retries per request (rate limits, timeouts, server errors), with exponential back-off."""
    prices: Optional[str] = None
    """YAML of per-model token prices for cost estimates; None = the shipped harness/judge/prices.yaml."""
    null_control: bool = False
    """Also judge a constant null answer set (arXiv 2410.07137): a high score there means the judge can be gamed."""
    max_tokens: int = 2048
    """Longest judge reply in tokens."""

    def __post_init__(self) -> None:
        if self.base_url is not None:
            _require(str(self.base_url).startswith(("http://", "https://")), "eval.judge.base_url", self.base_url,
                     "must start with http:// or https://")
        _require(bool(str(self.model).strip()), "eval.judge.model", self.model, "must name the judge model")
        if self.api_key_env is not None:
            if KEY_LIKE.search(str(self.api_key_env)):
                raise ConfigError("eval.judge.api_key_env: looks like an API key, not a variable name; put the key in "
                                  "the environment (export OPENAI_API_KEY=...) and name the variable here")
            _require(bool(ENV_NAME.fullmatch(str(self.api_key_env))), "eval.judge.api_key_env", self.api_key_env,
                     "must be an environment variable name (or null for a server without a key)")
        _require(self.concurrency >= 1, "eval.judge.concurrency", self.concurrency, "must be >= 1")
        _require(self.repeats >= 1, "eval.judge.repeats", self.repeats, "must be >= 1")
        _positive("eval.judge.max_usd", self.max_usd, optional=True)
        _positive("eval.judge.timeout_s", self.timeout_s)
        _require(self.retries >= 0, "eval.judge.retries", self.retries, "must be >= 0")
        _positive("eval.judge.max_tokens", self.max_tokens)
        if self.prices is not None:
            _require(os.path.isfile(os.path.expanduser(self.prices)), "eval.judge.prices", self.prices, "no such file")


# --- what a generation result depends on (read by harness.identity.eval_keys) ---

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
    from harness.judge.inputs import ASSETS

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


# --- parent-side file checks (registry.EVALUATOR_CHECKS): quick, one line ---

def _exists(key: str, path: Optional[str]) -> None:
    if path is not None:
        _require(Path(path).expanduser().is_file(), key, path, "no such file")


def check_judge_prompts(path: Optional[str]) -> None:
    """A judge_prompts.jsonl parses and every row has a name and a prompt_template."""
    from harness.judge.inputs import JUDGE_PROMPTS, read_jsonl, resolve

    key = "eval.mt_bench.judge_prompts"
    for number, row in enumerate(read_jsonl(resolve(path, JUDGE_PROMPTS), key), 1):
        _require("name" in row and "prompt_template" in row, key, path, f"line {number} needs name and prompt_template")


def check_mt_bench(block: MtBenchEvalConfig, cache_dir: str) -> None:
    """Question, reference and judge-prompt files exist and parse."""
    from harness.judge.inputs import MT_BENCH_REFERENCES, read_jsonl, resolve

    _exists("eval.mt_bench.questions", block.questions)
    _exists("eval.mt_bench.references", block.references)
    _exists("eval.mt_bench.judge_prompts", block.judge_prompts)
    from harness.judge.inputs import mt_bench_questions

    mt_bench_questions(block.questions, block.limit)
    read_jsonl(resolve(block.references, MT_BENCH_REFERENCES), "eval.mt_bench.references")
    check_judge_prompts(block.judge_prompts)


def alpaca_items(block: AlpacaEvalConfig) -> List[Dict[str, Any]]:
    """The reference rows to answer, in order, each with its position in the reference set as ``index``.

    With ``instructions`` given, each of its rows is matched to the reference with the same
    instruction text; one that has none is a one-line error naming file and row.
    """
    from harness.judge.inputs import alpaca_references, read_records

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
            _require(isinstance(text, str), key, block.instructions, f"item {number} needs a string instruction")
            _require(text in by_text, key, block.instructions,
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
        _require(not missing, "eval.alpaca_eval.difficulty", block.difficulty, f"CSV lacks column(s) {', '.join(sorted(missing))}")


def _check_hub_references() -> None:
    """One line now, instead of a failed cell later, when the hub reference file is neither cached nor reachable."""
    import os

    from huggingface_hub import try_to_load_from_cache

    from harness.hub import hub_reachable
    from harness.judge.inputs import ALPACA_HUB

    if isinstance(try_to_load_from_cache(ALPACA_HUB["repo_id"], ALPACA_HUB["filename"], repo_type="dataset"), str):
        return
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    _require(hub_reachable(endpoint), "eval.alpaca_eval.references", "null",
             f"AlpacaEval 2.0's reference outputs ({ALPACA_HUB['repo_id']}/{ALPACA_HUB['filename']}) need the hub, "
             f"which is not reachable from here ({endpoint}) and they are not in the local cache; "
             "give a local file (a JSON list of instruction/output)")


def check_domain(block: DomainEvalConfig, cache_dir: str) -> None:
    """The domain file reads as chat data (memoised per file state, as data.path is)."""
    from harness.config import DataConfig
    from harness.data.load import check_source
    from harness.errors import DataError

    try:
        check_source(DataConfig(path=block.path))
    except DataError as exc:
        raise ConfigError(f"eval.domain.path={block.path}: {exc}") from None
