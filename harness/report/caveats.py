"""What travels with a number: the judge that produced a score, and the caveats that change how a figure reads.

The console's summary prints these once under its table; a published file must carry them itself, since a
reader of report.md, report.tex, report.html or metrics.csv never sees the console. So:

- every judged metric row names the judge that judged it, read from the judge's own result
  (``harness.judge.run.write_result``: model, prompt-file hash, repeats, n judged, limit), never the cell's
  ``eval.judge`` config, which names whom the sweep's command asked, not who answered a later
  ``python -m harness.judge DIR eval.judge.model=...``;
- the caveats (random weights, CPU figures, bitsandbytes dequantizing on CPU, noisy throughput, the
  judge's own caveats: a limited question set, repeats at temperature 0, a score below the null control,
  flagged judgments left out) go into a ``caveats`` column of cells.csv / metrics.csv and under every
  table whose numbers they concern.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from harness.report.quality import PREFIX
from harness.report.summary import NOTES, is_cpu, real_random
from harness.store.layout import JUDGE_FACTS

BENCH_OF = {prefix: bench for bench, prefix in PREFIX.items()}
"""Column prefix (``mt_bench``, ``alpaca``) -> judged benchmark (``mt_bench``, ``alpaca_eval``)."""
JUDGE_COLUMNS = ("judge_model", "judge_n", "judge_limit", "judge_repeats", "judge_prompt_hash")
"""The metric rows' columns that say who judged (metrics.csv); the wide table has them as ``<prefix>_<column>``."""
NOISY = ("tokens_per_s is noisy here (step CV above run.step_cv_warn): read tokens_per_s_p25..p75, not one number")


def bench_of(column: str) -> Optional[str]:
    """The judged benchmark a wide column or metric name belongs to (``mt_bench_turn1`` -> mt_bench), or None."""
    for prefix, bench in BENCH_OF.items():
        if column == prefix or column.startswith(f"{prefix}_"):
            return bench
    return None


def judged_by(cell: Dict[str, Any], bench: str) -> Dict[str, Any]:
    """``judge_model``, ``judge_n``, ... of the judge result the cell's ``bench`` scores came from ({} if none)."""
    facts = ((cell.get(JUDGE_FACTS) or {}).get(bench) or {}).get("judge") or {}
    if not facts:
        return {}
    digest = facts.get("prompt_hash")
    return {"judge_model": facts.get("model"), "judge_n": facts.get("n_judged"), "judge_limit": facts.get("limit"),
            "judge_repeats": facts.get("repeats"), "judge_prompt_hash": str(digest)[:12] if digest else None}


def judge_caveats(cell: Dict[str, Any], bench: str) -> List[str]:
    """The caveats the judge wrote into its result for this cell's ``bench`` scores."""
    return list(((cell.get(JUDGE_FACTS) or {}).get(bench) or {}).get("caveats") or [])


def judge_text(facts: Dict[str, Any]) -> str:
    """``judge-a, n=8 judged (eval limit 8), repeats 1, prompts sha256 0123456789ab``: one judge setting as a reader sees it."""
    parts = [str(facts.get("judge_model"))]
    if facts.get("judge_n") is not None:
        limit = f" (eval limit {facts['judge_limit']})" if facts.get("judge_limit") is not None else ""
        parts.append(f"n={facts['judge_n']} judged{limit}")
    if facts.get("judge_repeats") is not None:
        parts.append(f"repeats {facts['judge_repeats']}")
    if facts.get("judge_prompt_hash"):
        parts.append(f"prompts sha256 {facts['judge_prompt_hash']}")
    return ", ".join(parts)


def kind_of(metric: str, unit: Any) -> str:
    """memory, speed or quality: which caveats a metric row needs."""
    if unit == "MiB" or metric.endswith("mem_mib"):
        return "memory"
    if unit == "tokens/s" or metric.startswith(("tokens_per_s", "mfu")):
        return "speed"
    return "quality"


def cell_caveats(row: Dict[str, Any], cell: Dict[str, Any], kind: Optional[str] = None,
                 bench: Optional[str] = None) -> List[str]:
    """The caveats of one cell's figures of ``kind`` (None: all of them), with the judge's for ``bench`` (None: every
    judged benchmark's; "": none)."""
    config = cell.get("config") or {}
    notes: List[str] = []
    if row.get("weights") == "random":
        real = real_random(config)
        if real or kind in (None, "quality"):
            notes.append(NOTES["random_real" if real else "random"])
    if is_cpu(row) and kind in (None, "memory", "speed"):
        notes.append(NOTES["cpu"])
    if is_cpu(row) and row.get("quant") in ("4bit", "8bit") and kind in (None, "memory"):
        notes.append(NOTES["cpu_bnb"])
    if row.get("step_cv_flag") and kind in (None, "speed"):
        notes.append(NOISY)
    if kind in (None, "quality"):
        for name in ([bench] if bench else [] if bench == "" else sorted(cell.get(JUDGE_FACTS) or {})):
            notes += judge_caveats(cell, name)
    return notes


def wide_columns(row: Dict[str, Any], cell: Dict[str, Any]) -> Dict[str, Any]:
    """Columns for cells.csv: ``<prefix>_judge_model`` ... per judged benchmark, and ``caveats`` (``; ``-joined)."""
    out: Dict[str, Any] = {}
    for bench in sorted(cell.get(JUDGE_FACTS) or {}):
        out.update({f"{PREFIX.get(bench, bench)}_{k}": v for k, v in judged_by(cell, bench).items()})
    out["caveats"] = "; ".join(cell_caveats(row, cell)) or None
    return out


def metric_columns(row: Dict[str, Any], cell: Dict[str, Any], metric: Dict[str, Any],
                   memo: Optional[Dict[Any, Dict[str, Any]]] = None) -> Dict[str, Any]:
    """Columns for one metrics.csv row: who judged it (judged rows only) and the caveats of its kind.

    memo: a dict kept across one cell's rows; rows of the same judge and kind share the answer (a copy each).
    """
    bench = metric.get("evaluator") if metric.get("evaluator") in PREFIX else None
    if memo is not None:  # a cell's ~13 rows have 2-4 distinct (judge, kind): 10,000 cells spent ~1 s here
        key = (bench, kind_of(str(metric.get("metric")), metric.get("unit")))
        if key not in memo:
            memo[key] = metric_columns(row, cell, metric)
        return dict(memo[key])
    out: Dict[str, Any] = dict.fromkeys(JUDGE_COLUMNS)
    if bench:
        out.update(judged_by(cell, bench))
    kind = kind_of(str(metric.get("metric")), metric.get("unit"))
    out["caveats"] = "; ".join(cell_caveats(row, cell, kind, bench or "")) or None
    return out


ROW_COLUMNS = ("device", "mem_counter", "quant", "step_cv_flag", "weights")
"""The wide columns the caveats read."""


def caveat_rows(wide: Any) -> List[Dict[str, Any]]:
    """The wide table's rows as dicts of just ``ROW_COLUMNS`` (what ``table_notes`` reads; cheap for 10,000 cells)."""
    return wide[[c for c in ROW_COLUMNS if c in wide.columns]].to_dict("records")


def table_notes(rows: List[Dict[str, Any]], cells: List[Dict[str, Any]], metric: str, unit: Any) -> List[str]:
    """The footnotes a table of ``metric`` needs beyond the device/library lines: who judged, and every caveat.

    ``rows`` are the wide rows and ``cells`` the cell views, in the same order. Random-weight and CPU notes are
    the pivot's own (``environment_notes``, ``NOTES["cpu"]``); this adds the rest.
    """
    notes: List[str] = []
    kind = kind_of(metric, unit)
    if kind == "memory" and any(is_cpu(r) and r.get("quant") in ("4bit", "8bit") for r in rows):
        notes.append(NOTES["cpu_bnb"])
    flagged = sum(1 for r in rows if r.get("step_cv_flag"))
    if kind == "speed" and flagged:
        notes.append(f"{NOISY} ({flagged} of {len(rows)} cells)")
    bench = bench_of(metric)
    if bench is None:
        return notes
    judges: Dict[str, int] = {}
    caveats: Dict[str, int] = {}
    for cell in cells:
        facts = judged_by(cell, bench)
        if facts:
            judges[judge_text(facts)] = judges.get(judge_text(facts), 0) + 1
        for caveat in judge_caveats(cell, bench):
            caveats[caveat] = caveats.get(caveat, 0) + 1
    scored = sum(judges.values())
    for text, count in judges.items():
        notes.append(f"judge: {text}" + (f" ({count} of {scored} cells)" if len(judges) > 1 else ""))
    for text, count in caveats.items():
        notes.append(f"caveat: {text}" + (f" ({count} of {scored} cells)" if count < scored else ""))
    return notes
