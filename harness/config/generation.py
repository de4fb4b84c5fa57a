"""Config blocks of the generation benchmarks (MT-Bench, AlpacaEval, domain sets) and their judge.

Dataclasses only; the files they point at are checked and digested in ``harness.benchmarks.checks``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Optional

from harness.config.names import require
from harness.errors import ConfigError

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
KEY_LIKE = re.compile(r"^(sk-|sk_|Bearer |ghp_|hf_)|^[A-Za-z0-9_\-]{40,}$")
"""Values that look like an API key rather than the name of the variable holding one."""


def _positive(key: str, value: Optional[float], optional: bool = False) -> None:
    if optional and value is None:
        return
    require(value is not None and value > 0, key, value, "must be > 0" + (" (or null)" if optional else ""))


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
    """Answer a seeded sample of N questions stratified across categories (harness.benchmarks.inputs.stratified_sample);
    None = all 80. A limited score is for quick checks: not comparable with published numbers."""
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
        require(bool(str(self.path).strip()), "eval.domain.path", self.path, "is required: a chat file of prompts and reference answers")
        require(os.path.exists(os.path.expanduser(self.path)), "eval.domain.path", self.path, "no such file or folder")
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
    score_flagged: bool = False
    """Also score judgments of answers flagged for verdict or fence markup (by default they are counted in _flagged
    and left out of the score)."""
    strict_range: bool = False
    """MT-Bench: drop ratings outside 1-10 (FastChat keeps them; either way they are counted in _out_of_range)."""
    during_sweep: bool = True
    """Judge each cell as soon as its answers are stored, in a background thread of the sweep's parent, while
    other cells still train (``harness.judge.watch``); false: judge only after all training. Same calls, cache
    and results either way; not part of the judge key."""

    def __post_init__(self) -> None:
        if self.base_url is not None:
            require(str(self.base_url).startswith(("http://", "https://")), "eval.judge.base_url", self.base_url,
                     "must start with http:// or https://")
        require(bool(str(self.model).strip()), "eval.judge.model", self.model, "must name the judge model")
        if self.api_key_env is not None:
            if KEY_LIKE.search(str(self.api_key_env)):
                raise ConfigError("eval.judge.api_key_env: looks like an API key, not a variable name; put the key in "
                                  "the environment (export OPENAI_API_KEY=...) and name the variable here")
            require(bool(ENV_NAME.fullmatch(str(self.api_key_env))), "eval.judge.api_key_env", self.api_key_env,
                     "must be an environment variable name (or null for a server without a key)")
        require(self.concurrency >= 1, "eval.judge.concurrency", self.concurrency, "must be >= 1")
        require(self.repeats >= 1, "eval.judge.repeats", self.repeats, "must be >= 1")
        _positive("eval.judge.max_usd", self.max_usd, optional=True)
        _positive("eval.judge.timeout_s", self.timeout_s)
        require(self.retries >= 0, "eval.judge.retries", self.retries, "must be >= 0")
        _positive("eval.judge.max_tokens", self.max_tokens)
        if self.prices is not None:
            require(os.path.isfile(os.path.expanduser(self.prices)), "eval.judge.prices", self.prices, "no such file")
