"""What a judge result says about its own judge: the ``judge`` block's extra keys and ``caveats``.

``caveats`` are complete sentences a report can print beside the number. Old result.json
files lack these keys: read a missing key as none.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

ID_KEY = {"mt_bench": "question_id", "alpaca_eval": "index"}
"""The item id of each judged benchmark's judgments."""
MAIN = {"mt_bench": "mt_bench", "alpaca_eval": "alpaca_wr"}
"""The headline metric compared with its ``_null`` control."""
TITLE = {"mt_bench": ("MT-Bench", "questions"), "alpaca_eval": ("AlpacaEval", "instructions")}
"""How a caveat names each benchmark and its items."""


def judge_facts(name: str, block: Dict[str, Any], judged: List[Dict[str, Any]], requests: List[Any],
                total: Optional[int]) -> Dict[str, Any]:
    """n_judged (items with a parsed judgment), limit, temperatures, and the sampled item ids under a limit."""
    key = ID_KEY.get(name, "index")
    ids = sorted({j.get(key) for j in judged if j.get("status") == "ok"}, key=str)
    limit = block.get("limit")
    return {"n_judged": len(ids), "limit": limit, "total": total,
            "temperatures": sorted({float(r.temperature) for r in requests}),
            "sample": sorted({r.tag.get(key) for r in requests}, key=str) if limit else None}


def _row(rows: List[Dict[str, Any]], metric: str, task: str) -> Optional[Dict[str, Any]]:
    return next((r for r in rows if r.get("metric") == metric and r.get("task") == task), None)


def caveats(name: str, facts: Dict[str, Any], rows: List[Dict[str, Any]], judge: Dict[str, Any]) -> List[str]:
    """Short sentences on what limits the number: a limit, repeats at temperature 0, below null, flagged excluded."""
    out = []
    bench, items = TITLE.get(name, (name, "items"))
    if facts.get("limit"):
        of = f" of {facts['total']}" if facts.get("total") else ""
        shown = len(facts["sample"]) if facts.get("sample") else facts.get("n_judged")  # the sample, judged or not
        out.append(f"{bench} on {shown}{of} {items} (eval limit): not comparable with published scores")
    repeats = int(judge.get("repeats") or 1)
    if repeats > 1 and facts.get("temperatures") == [0.0]:
        out.append(f"repeats={repeats} at temperature 0: the spread measures only the judge server's nondeterminism")
    main, null = _row(rows, MAIN.get(name, name), name), _row(rows, f"{MAIN.get(name, name)}_null", name)
    if main and null and main["value"] < null["value"]:
        out.append(f"scores below the judge's null control ({main['value']:.3g} vs {null['value']:.3g}): "
                   f"the judge may not be discriminating")
    flagged = _row(rows, "flagged", name)
    if flagged and flagged.get("excluded") and flagged.get("value"):
        count = int(flagged["value"])
        out.append(f"{count} judgment{'s' if count != 1 else ''} flagged (injected verdict/fence) and excluded")
    return out
