"""AlpacaEval 2.0 answers, generated in the worker: one greedy answer per instruction.

The instructions are the reference set's (AlpacaEval 2.0's 805 with gpt4_turbo outputs
by default) or a file of your own matched to it by instruction text. ``answers.jsonl``
carries each answer beside its reference output, in the format the judge
(``harness.judge.alpaca_eval``) reads; the rows reported here are only about the answers.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from harness.benchmarks.checks import ALPACA_HUB_ID, alpaca_items, path_digest
from harness.config.generation import AlpacaEvalConfig
from harness.evaluators.generation import generate, mean, write_jsonl
from harness.seams import EvalContext, ModelView
from harness.store.records import metric_row

ANSWERS = "answers.jsonl"


class AlpacaEvalEvaluator:
    """Writes the model's AlpacaEval answers (answers.jsonl) for the judge; rows: answer length, cut-offs."""

    name = "alpaca_eval"

    def __init__(self, config: AlpacaEvalConfig) -> None:
        self.config = config
        self.items: Optional[List[Dict[str, Any]]] = None

    def prepare(self, ctx: Optional[EvalContext] = None) -> None:
        """Read (or fetch) the references and match the instructions before the model loads."""
        self.items = alpaca_items(self.config)

    def baseline_identity(self, ctx: EvalContext) -> Dict[str, Any]:
        """The reference (and instruction) files' content, or the hub set's id."""
        cfg = self.config
        ident = {"references": path_digest(cfg.references) if cfg.references else ALPACA_HUB_ID}
        if cfg.instructions:
            ident["instructions"] = path_digest(cfg.instructions)
        return ident

    def answer(self, view: ModelView) -> List[Dict[str, Any]]:
        """One answers-file row per instruction."""
        if self.items is None:
            self.prepare()
        items = self.items or []
        cfg = self.config
        conversations = [[{"role": "user", "content": item["instruction"]}] for item in items]
        outs = generate(view, conversations, cfg.max_new_tokens, 0.0, cfg.batch_size, cfg.seed)
        return [
            {"index": item["index"], "instruction": item["instruction"], "output": out["text"], "tokens": out["tokens"],
             "cut_off": out["cut_off"], "reference": item["output"], "reference_generator": item.get("generator"),
             "dataset": item.get("dataset")}
            for item, out in zip(items, outs)
        ]

    def evaluate(self, view: ModelView, ctx: EvalContext) -> List[Dict[str, Any]]:
        """Generate and write answers.jsonl; rows alpaca_answer_tokens and alpaca_cut_off (n = answers)."""
        from harness.benchmarks.stats import sem

        answers = self.answer(view)
        write_jsonl(ctx.cell_dir / ANSWERS, answers)
        tokens = [a["tokens"] for a in answers]
        cut = sum(a["cut_off"] for a in answers)
        return [
            metric_row("alpaca_eval", "alpaca_eval", "alpaca_answer_tokens", mean(tokens), stderr=sem(tokens), n=len(tokens),
                       higher_is_better=False, unit="tokens"),
            metric_row("alpaca_eval", "alpaca_eval", "alpaca_cut_off", cut, n=len(tokens), higher_is_better=False, unit="count"),
        ]
