"""A domain set of your own: greedy answers scored against reference answers, no judge needed.

The file is any chat data the training loader reads (messages, ShareGPT, Alpaca,
prompt/completion, ChatML). Each conversation's last assistant message is the reference;
everything before it is the prompt. Scores, from maintained packages:

- ``exact_match``: share of answers equal to the reference after stripping outer
  whitespace and collapsing inner runs of whitespace (case-sensitive); stderr = sem.
- ``rouge_l``: mean ROUGE-L F-measure (``rouge_score``, Porter stemming); stderr = sem.
  Its tokenizer keeps only a-z0-9, so it says little about non-English text.
- ``bleu``: corpus BLEU (``sacrebleu``, 13a tokenization), 0-100; no stderr.

Plus ``answer_tokens`` (mean) and ``cut_off`` (answers that hit max_new_tokens).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List, Optional

from harness.benchmarks.checks import path_digest
from harness.config.generation import DomainEvalConfig
from harness.evaluators.generation import generate, mean, write_jsonl
from harness.seams import EvalContext, ModelView
from harness.store.records import metric_row

ANSWERS = "answers.jsonl"
SPACES = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Outer whitespace stripped, inner runs of whitespace made one space: what exact_match compares."""
    return SPACES.sub(" ", text.strip())


def load_items(path: str, limit: Optional[int]) -> List[Dict[str, Any]]:
    """{prompt (messages before the last assistant turn), reference, where} per conversation, the first ``limit``."""
    from harness.config.data import DataConfig
    from harness.data.load import load_conversations

    items = []
    for example in load_conversations(DataConfig(path=path)).examples:
        turns = example.conversation
        last = max((i for i, m in enumerate(turns) if m["role"] == "assistant"), default=None)
        if last is None:  # the loader requires an assistant turn; a plug-in format might not
            continue
        prompt = [{"role": m["role"], "content": m["content"]} for m in turns[:last]]
        items.append({"prompt": prompt, "reference": turns[last]["content"], "where": example.where})
    return items[:limit] if limit else items


def scores(outputs: List[str], references: List[str]) -> Dict[str, Any]:
    """exact_match and rouge_l per item, corpus bleu."""
    import sacrebleu
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return {
        "exact_match": [float(normalise(o) == normalise(r)) for o, r in zip(outputs, references)],
        "rouge_l": [scorer.score(r, o)["rougeL"].fmeasure for o, r in zip(outputs, references)],
        "bleu": sacrebleu.corpus_bleu(outputs, [references]).score if outputs else float("nan"),
    }


def task_name(path: str) -> str:
    """The task label of a domain file: its stem (a folder's name)."""
    return Path(path).expanduser().stem or "domain"


class DomainEvaluator:
    """Greedy answers to a domain set's prompts, scored against its references (exact match, ROUGE-L, BLEU)."""

    name = "domain"

    def __init__(self, config: DomainEvalConfig) -> None:
        self.config = config
        self.items: Optional[List[Dict[str, Any]]] = None

    def prepare(self, ctx: Optional[EvalContext] = None) -> None:
        """Read the domain file before the model loads."""
        self.items = load_items(self.config.path, self.config.limit)

    def baseline_identity(self, ctx: EvalContext) -> Dict[str, Any]:
        """The domain file's content: base scores are computed once per base and file."""
        return {"path": path_digest(Path(self.config.path))}

    def evaluate(self, view: ModelView, ctx: EvalContext) -> List[Dict[str, Any]]:
        """Generate, write answers.jsonl (prompt, reference, output per item) and score."""
        from harness.benchmarks.stats import sem

        if self.items is None:
            self.prepare()
        items, cfg = self.items or [], self.config
        outs = generate(view, [item["prompt"] for item in items], cfg.max_new_tokens, 0.0, cfg.batch_size, 0)
        write_jsonl(ctx.cell_dir / ANSWERS, [
            {"index": i, **item, "output": out["text"], "tokens": out["tokens"], "cut_off": out["cut_off"]}
            for i, (item, out) in enumerate(zip(items, outs))
        ])
        got = scores([o["text"] for o in outs], [item["reference"] for item in items])
        task, n = task_name(cfg.path), len(items)
        tokens = [o["tokens"] for o in outs]
        row = lambda metric, value, **kw: metric_row("domain", task, metric, value, n=n, **kw)  # noqa: E731
        return [
            row("exact_match", mean(got["exact_match"]), stderr=sem(got["exact_match"]), higher_is_better=True, unit="share"),
            row("rouge_l", mean(got["rouge_l"]), stderr=sem(got["rouge_l"]), higher_is_better=True, unit="F1"),
            row("bleu", got["bleu"], higher_is_better=True, unit="0-100"),
            row("answer_tokens", mean(tokens), stderr=sem(tokens), higher_is_better=False, unit="tokens"),
            row("cut_off", sum(o["cut_off"] for o in outs), higher_is_better=False, unit="count"),
        ]
