"""Summary columns of the generation benchmarks: MT-Bench, AlpacaEval and domain sets.

Judge results carry many rows (per category, per side, counts); the summary shows each
benchmark's headline scores with their stderr and delta against the base, and keeps the
counts (judged / failed / cached / unparseable ...) in summary.csv and summary.md only.
Light: read in the parent.
"""

from __future__ import annotations

from typing import Any, Dict, List

PREFIX = {"mt_bench": "mt_bench", "alpaca_eval": "alpaca"}
"""Judged benchmark -> the prefix of its summary columns."""
HEADLINE = ("mt_bench", "mt_bench_turn1", "mt_bench_turn2", "mt_bench_delta", "mt_bench_null", "alpaca_wr",
            "alpaca_lc_wr", "alpaca_lc_wr_minimal", "alpaca_wr_delta", "alpaca_lc_wr_delta", "alpaca_lc_wr_minimal_delta",
            "alpaca_wr_null")
"""Judge columns the console table shows (with their stderr); the rest stay in the files."""
DOMAIN_SCORES = ("exact_match", "rouge_l", "bleu")
GENERATED = ("mt_bench_answer_tokens", "mt_bench_cut_off", "alpaca_answer_tokens", "alpaca_cut_off")
"""Rows the generation step itself reports (answer lengths, answers cut off at max_new_tokens)."""
DEFINITIONS = {
    "mt_bench": "MT-Bench single-answer grading (FastChat prompts, judge eval.judge.model): mean of all parsed 1-10 "
                "judgments over both turns; _se bootstrap over questions; mt_bench_turn1/_turn2 per turn; "
                "mt_bench_<category> per category",
    "mt_bench_delta": "cell minus the untrained base on the same questions and judge; _se from a paired bootstrap over questions",
    "alpaca_wr": "AlpacaEval 2.0 win rate (%) against the reference outputs, weighted by the judge's token probabilities "
                 "(ties 0.5); _se standard error over instructions",
    "alpaca_lc_wr, alpaca_lc_wr_minimal": "length-controlled win rate (%): alpaca_eval's GLM read off at zero length "
                                          "difference; _minimal without the instruction-difficulty table",
    "<bench>_judged, _failed, _unparseable, _cached, _flagged": "judge calls parsed, failed (retry with python -m harness.judge), "
                                                                 "answered but without a verdict (excluded, never 0), served "
                                                                 "from the cache, and answers containing verdict markup",
    "<set>_exact_match, _rouge_l, _bleu": "domain set (eval.domain.path): exact match share, mean ROUGE-L F1, corpus BLEU "
                                          "(sacrebleu, 0-100), greedy answers against the file's last assistant turns",
}


def _column(evaluator: str, row: Dict[str, Any]) -> str:
    prefix = PREFIX[evaluator]
    metric, task = row["metric"], row["task"]
    if task not in (evaluator, prefix):  # a category of MT-Bench
        return f"{prefix}_{task}" + metric[len(evaluator):] if metric.startswith(evaluator) else f"{prefix}_{task}_{metric}"
    return metric if metric.startswith(prefix) else f"{prefix}_{metric}"


def judge_cells(record: Dict[str, Any]) -> Dict[str, Any]:
    """The judged benchmarks' columns of one record (value, and ``_se`` where the row has a stderr)."""
    cells: Dict[str, Any] = {}
    for row in record.get("metrics", []):
        evaluator = row.get("evaluator")
        if evaluator not in PREFIX or not isinstance(row.get("value"), (int, float)):
            continue
        if row["metric"].startswith(GENERATED) and row["metric"].endswith(("_base", "_delta")):
            continue  # the base's answer lengths: in the result file, not a column
        column = _column(evaluator, row)
        cells[column] = row["value"]
        if row.get("stderr") is not None:
            cells[f"{column}_se"] = row["stderr"]
    return cells


def domain_cells(record: Dict[str, Any]) -> Dict[str, Any]:
    """``<set>_<score>`` (+ ``_se``, ``_delta``) for each domain set the record was scored on."""
    cells: Dict[str, Any] = {}
    for row in record.get("metrics", []):
        if row.get("evaluator") != "domain" or not row["metric"].startswith(DOMAIN_SCORES) or row["metric"].endswith("_base"):
            continue  # the base's own score stays in the result file; its delta is the column
        column = f"{row['task']}_{row['metric']}"
        cells[column] = row["value"]
        if row.get("stderr") is not None:
            cells[f"{column}_se"] = row["stderr"]
    return cells


def console_hidden(column: str) -> bool:
    """True for a judge column the console leaves to the files (counts, categories, bases)."""
    base = column[:-3] if column.endswith("_se") else column
    if base.startswith(tuple(f"{p}_" for p in PREFIX.values())) or base in PREFIX.values():
        return base not in HEADLINE
    return False


def quality_cells(record: Dict[str, Any]) -> Dict[str, Any]:
    """All generation-benchmark columns of one record."""
    return {**judge_cells(record), **domain_cells(record)}


def quality_definitions(columns: List[str]) -> Dict[str, str]:
    """The definitions of the generation-benchmark columns, when ``columns`` has any."""
    prefixes = tuple(f"{p}" for p in PREFIX.values())
    shown = any(c.startswith(prefixes) or c.endswith(tuple(f"_{s}" for s in DOMAIN_SCORES)) for c in columns)
    return dict(DEFINITIONS) if shown else {}
