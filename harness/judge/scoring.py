"""Which judgments count towards a score: the rules MT-Bench and AlpacaEval share.

A judgment of an answer that carries the judge prompt's fence markers or verdict
markup (``flags``) is left out of every score by default: an echoed ``[[10]]`` or a
closed fence can make the judge repeat the answer's own verdict, so scoring it would
reward the injection. ``eval.judge.score_flagged=true`` scores them anyway (the
earlier behaviour); either way they are counted (``_flagged``).
"""

from __future__ import annotations

from typing import Any, Dict, List


def is_flagged(judgment: Dict[str, Any]) -> bool:
    """The judged answer looked like it games the judge (fence or verdict markup)."""
    return bool(judgment.get("flags"))


def counted(judged: List[Dict[str, Any]], judge: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The judgments that may be scored: flagged ones dropped unless eval.judge.score_flagged."""
    if judge.get("score_flagged"):
        return list(judged)
    return [j for j in judged if not is_flagged(j)]


def flagged_note(flagged: int, judge: Dict[str, Any]) -> Dict[str, Any]:
    """Extra fields for the ``flagged`` count row: whether they were excluded, and a one-line warning if so."""
    excluded = bool(flagged) and not judge.get("score_flagged")
    out: Dict[str, Any] = {"excluded": excluded}
    if excluded:
        out["warning"] = (f"{flagged} judgment{'s' if flagged != 1 else ''} flagged (injected verdict/fence) and "
                          f"excluded from the score (eval.judge.score_flagged=true scores them)")
    return out
