"""``eval``: which evaluators score a cell, and the perplexity and lm-eval blocks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from harness.config.generation import AlpacaEvalConfig, DomainEvalConfig, JudgeConfig, MtBenchEvalConfig
from harness.config.names import require


@dataclass
class PerplexityEvalConfig:
    """Held-out loss and perplexity, token-weighted over loss-bearing tokens."""

    batch_size: int = 8
    """Sequences per forward pass."""
    rolling: bool = True
    """Also score every token of each held-out example the way lm-eval's loglikelihood_rolling does
    (seq_nll, seq_perplexity, word_perplexity, byte_perplexity, bits_per_byte); one more pass."""
    max_length: Optional[int] = None
    """Rolling window in tokens; None = the model's context length, as lm-eval picks it."""

    def __post_init__(self) -> None:
        require(self.batch_size > 0, "eval.perplexity.batch_size", self.batch_size, "must be a positive integer")
        if self.max_length is not None:
            require(self.max_length > 1, "eval.perplexity.max_length", self.max_length, "must be > 1 (or null)")


@dataclass
class LmEvalConfig:
    """lm-evaluation-harness tasks, scored in-process on the trained model (``eval=[mmlu]``)."""

    tasks: List[str] = field(default_factory=lambda: ["mmlu"])
    """lm-eval task, group or tag names (``eval.lm_eval.tasks=[mmlu,hellaswag,arc_easy]``); hub data via lm-eval."""
    num_fewshot: Optional[int] = None
    """Few-shot examples per question; None keeps each task's own default (conf/eval/mmlu.yaml sets 5)."""
    limit: Optional[float] = None
    """Score at most this many questions per task (per subject for mmlu), a fraction when < 1; None = all.
    A limited score is for quick checks only: it is not comparable with published numbers."""
    batch_size: int = 8
    """Requests per forward pass."""
    mmlu_dir: Optional[str] = None
    """Folder with MMLU-format dev.jsonl and test.jsonl that replaces the hub ``mmlu`` task (offline or
    private data); see harness/evaluators/mmlu_local.py for the format."""
    log_samples: bool = False
    """Also keep lm-eval's per-question outputs (prompt, log-likelihoods, correct or not) as
    ``lm_eval/samples_<task>.jsonl`` in the cell folder; large for full MMLU (~14k prompts)."""

    def __post_init__(self) -> None:
        require(len(self.tasks) > 0, "eval.lm_eval.tasks", self.tasks, "must name at least one lm-eval task")
        for name in self.tasks:
            require(bool(str(name).strip()) and "," not in str(name), "eval.lm_eval.tasks", name, "task names are non-empty, one per list item")
        if self.num_fewshot is not None:
            require(self.num_fewshot >= 0, "eval.lm_eval.num_fewshot", self.num_fewshot, "must be >= 0 (or null for the task default)")
        if self.limit is not None:
            require(self.limit > 0, "eval.lm_eval.limit", self.limit, "must be > 0 (a count, or a fraction < 1)")
        require(self.batch_size > 0, "eval.lm_eval.batch_size", self.batch_size, "must be a positive integer")
        if self.mmlu_dir is not None:  # the folder's files are checked by registry.EVALUATOR_CHECKS
            require("mmlu" in self.tasks, "eval.lm_eval.mmlu_dir", self.mmlu_dir, "replaces the task mmlu, but eval.lm_eval.tasks has no mmlu")


@dataclass
class EvalConfig:
    """Evaluators to run on each trained cell; a block that is set runs (``eval=[perplexity,mmlu]``)."""

    perplexity: Optional[PerplexityEvalConfig] = None
    """Held-out perplexity; see PerplexityEvalConfig."""
    lm_eval: Optional[LmEvalConfig] = None
    """lm-evaluation-harness tasks (conf/eval/mmlu.yaml: MMLU 5-shot); see LmEvalConfig."""
    mt_bench: Optional[MtBenchEvalConfig] = None
    """MT-Bench answers (generated here, judged by eval.judge); see harness/benchmarks/checks.py."""
    alpaca_eval: Optional[AlpacaEvalConfig] = None
    """AlpacaEval 2.0 answers (generated here, judged against a reference by eval.judge)."""
    domain: Optional[DomainEvalConfig] = None
    """Your own prompt/reference set: exact match, ROUGE-L and BLEU of greedy answers (eval.domain.path=FILE)."""
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    """The LLM judge of mt_bench and alpaca_eval (any OpenAI-compatible server); not an evaluator itself."""
    baseline: bool = True
    """Also score the untrained base once per (model, quantization, evaluator config), cached and shared
    by every cell, and report each metric's ``_base`` and ``_delta`` (cell minus base)."""

    def enabled(self) -> List[str]:
        """Names of the evaluators whose block is set, in a stable order."""
        names = ("perplexity", "lm_eval", "mt_bench", "alpaca_eval", "domain")
        return [name for name in names if getattr(self, name) is not None]
