"""AlpacaEval 2.0: pairwise preference against the reference outputs, scored from the judge's logprobs.

Follows alpaca_eval (tatsu-lab/alpaca_eval, Apache-2.0), annotator
``weighted_alpaca_eval_gpt4_turbo``: the prompt ``alpaca_eval_clf.txt`` (assets/), one
generated token (``max_tokens=1``, ``temperature=1``, ``logprobs``, ``top_logprobs=5``, as
their config), and ``logprob_parser`` with numerator "m" over "m"/"M": the preference is
``2 - P(m) / (P(m) + P(M))``. alpaca_eval's convention throughout: output_1 is the
reference, output_2 the model; preference 1 = reference wins, 2 = model wins, 1.5 a tie;
win rate = mean(preference - 1) x 100, its stderr the sem of the same values.

Differences, each deliberate: the shown order is swapped for about half the items by a
seeded rule on the instruction (``is_swapped``; alpaca_eval randomises too, with its own
seeding) and every stored preference is turned back to the reference-first convention;
tokens are matched after stripping whitespace (" m" counts as "m"); with no logprobs from
the server (some local servers) the generated character decides (m: 1, M: 2) and the row
is counted as ``fallback``; identical outputs are a tie without a call; a token listed twice
among the alternatives counts once (its last entry, as alpaca_eval's dict keeps it), while
distinct tokens for one letter (" m" and "m") add their probabilities; judgments of
flagged outputs are left out of the scores unless ``eval.judge.score_flagged``
(``harness.judge.scoring``). An output containing chat markup (``<|im_end|>``) stays
inside its one message: alpaca_eval fills the prompt first and then splits it into chat
turns, so such an output injects a turn of its own; here the prompt is split first and
the output is flagged ("verdict") instead.
"""

from __future__ import annotations

import hashlib
import math
import re
import statistics
from typing import Any, Dict, Hashable, Iterable, List, Optional, Tuple

from harness.benchmarks.stats import paired_delta, sem
from harness.errors import ConfigError
from harness.judge import glm, scoring
from harness.judge.alpaca_inputs import PLACEHOLDERS, Inputs, load_inputs, parse_prompt  # noqa: F401 - this module's API
from harness.judge.calls import Outcome, Request
from harness.store.records import metric_row

EVALUATOR = "alpaca_eval"
FIELDS = re.compile(r"\{(instruction|output_1|output_2)\}")
MAX_TOKENS = 1
TEMPERATURE = 1.0
"""alpaca_eval's setting: with one token and logprobs it changes nothing, but it is part of the cache key."""
TOP_LOGPROBS = 5
FIRST, SECOND = "m", "M"
FENCE = '"""'
FENCED = '\\"\\"\\"'
VERDICT = re.compile(r"model_identifier|\[\[|##\s*(?:Best Model Identifier|Model Outputs|Instruction)\b"
                     r"|<\|im_(?:start|end)\|>|^\s*[mM]\s*$", re.MULTILINE)
"""Markup an answer could use to pose as the prompt or the verdict: template headings, identifiers, a lone m/M."""
NULL_ANSWER = ("Thank you for your question. Here is a clear, accurate and well-structured answer that addresses "
               "every part of your request in helpful detail.")
"""The null model's output for every instruction (arXiv 2410.07137): plain, constant, answering nothing."""


def is_swapped(instruction: str, seed: int = 0) -> bool:
    """Show the model first? Parity of sha256(f"{seed}\\0{instruction}"): fixed per instruction, about half."""
    return hashlib.sha256(f"{seed}\0{instruction}".encode()).digest()[-1] & 1 == 1


def answer_flags(text: str) -> List[str]:
    """Why an output looks like it games the judge: "fence" (closes the prompt's \"\"\" string), "verdict" (markup)."""
    return [flag for flag, hit in (("fence", FENCE in (text or "")), ("verdict", bool(VERDICT.search(text or "")))) if hit]


def fill(messages: List[Dict[str, str]], instruction: str, output_1: str, output_2: str) -> List[Dict[str, str]]:
    """The prompt with its three fields filled in one pass, so braces or "{output_2}" inside a text stay as they are."""
    values = {"instruction": instruction, "output_1": output_1, "output_2": output_2}
    return [{"role": m["role"], "content": FIELDS.sub(lambda hit: values[hit.group(1)], m["content"])} for m in messages]


class Requests(list):
    """The requests of one side, plus ``ties``: the judgments of identical outputs, which need no call."""

    ties: List[Dict[str, Any]]


def _usable(answer: Dict[str, Any]) -> bool:
    return all(isinstance(answer.get(k), str) for k in ("instruction", "output", "reference"))


def _tie(answer: Dict[str, Any], who: str, repeat: int) -> Dict[str, Any]:
    return {"who": who, "index": answer.get("index"), "swapped": False, "repeat": repeat,
            "output_chars": len(answer["output"]), "reference_chars": len(answer["reference"]), "flags": [],
            "preference": 1.5, "status": "ok", "cached": False, "error": None, "fallback": False,
            "first_won": None, "identical": True}


def requests(answers: List[Dict[str, Any]], inputs: Inputs, judge: Dict[str, Any], who: str) -> Requests:
    """One request per item and repeat (judge["repeats"]); identical outputs become ``ties`` instead.

    Items lacking a string instruction, output or reference are skipped (counted as failed by ``rows``).
    """
    if inputs.difficulty is not None:
        lacking = sorted({a.get("index") for a in answers if a.get("index") not in inputs.difficulty}, key=str)
        if lacking:
            raise ConfigError(f"eval.alpaca_eval.difficulty: no instruction_difficulty for item index {lacking[0]}"
                              f" ({len(lacking)} missing)")
    out = Requests()
    out.ties = []
    repeats = int(judge.get("repeats") or 1)
    for answer in answers:
        if not _usable(answer):
            continue
        if answer["output"] == answer["reference"]:
            out.ties.extend(_tie(answer, who, r) for r in range(repeats))
            continue
        flags = answer_flags(answer["output"])
        candidate = answer["output"].replace(FENCE, FENCED)
        swapped = is_swapped(answer["instruction"], inputs.seed)
        shown = (candidate, answer["reference"]) if swapped else (answer["reference"], candidate)
        messages = fill(inputs.messages, answer["instruction"], *shown)
        tag = {"who": who, "index": answer.get("index"), "swapped": swapped, "output_chars": len(answer["output"]),
               "reference_chars": len(answer["reference"]), "flags": flags}
        out.extend(Request(messages=messages, max_tokens=MAX_TOKENS, temperature=TEMPERATURE, logprobs=True,
                           top_logprobs=TOP_LOGPROBS, repeat=r, prompt_hash=inputs.prompt_hash,
                           tag={**tag, "repeat": r}) for r in range(repeats))
    return out


def p_first(outcome: Outcome) -> Tuple[Optional[float], bool]:
    """P(first-shown output is best) = P(m) / (P(m) + P(M)), and whether it came from the text (no logprobs)."""
    if not outcome.top_logprobs:
        first = (outcome.text or "").lstrip()[:1]
        return {FIRST: 1.0, SECOND: 0.0}.get(first), True
    mass = {FIRST: 0.0, SECOND: 0.0}
    # one entry per distinct token, the last one kept (alpaca_eval's {token: logprob} dict)
    last = {str(alt.get("token", "")): alt["logprob"] for alt in outcome.top_logprobs if alt.get("logprob") is not None}
    for raw, logprob in last.items():
        token = raw.strip()
        if token in mass:
            mass[token] += math.exp(float(logprob))
    total = mass[FIRST] + mass[SECOND]
    return (mass[FIRST] / total if total > 0 else None), False


def judgments(requests: List[Request], outcomes: List[Outcome]) -> List[Dict[str, Any]]:
    """One judgment per request (then the ties): the tag plus ``preference`` (1 = reference wins, 2 = model wins).

    ``first_won``: the first-shown output won (position bias); ``fallback``: scored from the text.
    """
    out = []
    for request, outcome in zip(requests, outcomes):
        row = {**request.tag, "preference": None, "cached": bool(outcome.cached), "error": outcome.error,
               "fallback": False, "first_won": None, "identical": False, "text": outcome.text}
        if not outcome.ok:
            out.append({**row, "status": "failed"})
            continue
        prob, row["fallback"] = p_first(outcome)
        if prob is None:
            out.append({**row, "status": "unparseable"})
            continue
        shown = 2 - prob  # alpaca_eval: output_1 ("m") preferred -> 1
        row.update(status="ok", preference=3 - shown if request.tag.get("swapped") else shown,
                   first_won=None if prob == 0.5 else prob > 0.5)
        out.append(row)
    return out + list(getattr(requests, "ties", []))


def null_answers(inputs: Inputs, answers: List[Dict[str, Any]], text: str = NULL_ANSWER) -> List[Dict[str, Any]]:
    """The null model's answers file: ``text`` as the output of every item in ``answers`` (same references)."""
    return [{**{k: a.get(k) for k in ("index", "instruction", "reference", "reference_generator", "dataset")},
             "output": text, "tokens": None, "cut_off": False} for a in answers]


def per_item(judged: List[Dict[str, Any]]) -> Dict[Hashable, Dict[str, Any]]:
    """Each item's preference averaged over its parsed repeats, with its lengths: the unit of every score."""
    items: Dict[Hashable, Dict[str, Any]] = {}
    for j in judged:
        if j.get("status") == "ok" and j.get("preference") is not None:
            item = items.setdefault(j.get("index"), {"prefs": [], "out": j.get("output_chars") or 0,
                                                    "ref": j.get("reference_chars") or 0, "identical": True})
            item["prefs"].append(float(j["preference"]))
            item["identical"] = item["identical"] and bool(j.get("identical"))
    return {k: {**v, "pref": sum(v["prefs"]) / len(v["prefs"])} for k, v in items.items()}


def item_order(keys: Iterable[Hashable]) -> List[Hashable]:
    """Item keys in the instruction set's order: integer indices numerically, any other key after them by text.

    alpaca_eval fits the GLM on the annotations in the instruction set's order, and GroupKFold's
    folds (hence the C picked) follow that order: sorting "0", "1", "10", ... as strings moved
    the LC win rate by up to 0.7 points on 805 items.
    """
    return sorted(keys, key=lambda k: (0, k, "") if isinstance(k, int) and not isinstance(k, bool) else (1, 0, str(k)))


def _lc(items: Dict[Hashable, Dict[str, Any]], inputs: Inputs) -> Optional[Dict[str, Any]]:
    """The length-controlled win rate of one side, with each item's prediction at equal length."""
    keys = item_order(items)
    if not keys:
        return None
    difficulty = [inputs.difficulty.get(k, 0.0) for k in keys] if inputs.difficulty is not None else None
    fit = glm.length_controlled([items[k]["pref"] for k in keys], [items[k]["ref"] for k in keys],
                                [items[k]["out"] for k in keys], difficulty,
                                identical=all(items[k]["identical"] for k in keys))
    return {**fit, "by_item": dict(zip(keys, fit["predictions"]))}


def _wr_row(metric: str, items: Dict[Hashable, Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    values = [(v["pref"] - 1) * 100 for v in items.values()]
    if not values:
        return None
    se = sem(values)
    return metric_row(EVALUATOR, EVALUATOR, metric, statistics.fmean(values), stderr=se, n=len(values),
                      higher_is_better=True, unit="%")


def _lc_row(metric: str, lc: Optional[Dict[str, Any]], inputs: Inputs) -> Optional[Dict[str, Any]]:
    if lc is None or lc["value"] is None:
        return None
    # alpaca_eval's lc_standard_error: the sem of the per-item predictions at equal length, x 100
    se = sem(lc["predictions"])
    row = metric_row(EVALUATOR, EVALUATOR, metric, lc["value"], stderr=None if se is None else se * 100,
                     n=len(lc["predictions"]), higher_is_better=True, unit="%")
    row.update(definition=glm.DEFINITION, weights=lc["weights"], fit=lc["fit"], difficulty_hash=inputs.difficulty_hash)
    return row


def _delta_row(metric: str, cell: Dict[Hashable, float], base: Dict[Hashable, float],
               bootstrap: bool = True) -> Optional[Dict[str, Any]]:
    """cell - base over the items both have; ``bootstrap``: paired bootstrap se and 95% interval."""
    if bootstrap:
        delta = paired_delta(cell, base)
    else:
        shared = [k for k in cell if k in base]
        delta = {"delta": statistics.fmean(cell[k] - base[k] for k in shared), "n": len(shared),
                 "se": None, "lo": None, "hi": None} if shared else None
    if delta is None:
        return None
    row = metric_row(EVALUATOR, EVALUATOR, metric, delta["delta"], stderr=delta["se"], n=delta["n"],
                     higher_is_better=True, unit="%")
    row["ci95"] = [delta["lo"], delta["hi"]] if delta["lo"] is not None else None
    return row


def _count_row(metric: str, value: float, unit: str = "count", **extra: Any) -> Dict[str, Any]:
    row = metric_row(EVALUATOR, EVALUATOR, metric, value, higher_is_better=False, unit=unit)
    row.update({k: v for k, v in extra.items() if v is not None})
    return row


def _counts(cell: List[Dict[str, Any]], items: Dict[Hashable, Dict[str, Any]], answers: List[Dict[str, Any]],
            judge: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Outcome and answer counts: wins/losses/ties, position bias, fallback, failures, flagged, cut-offs, lengths."""
    repeats = int(judge.get("repeats") or 1)
    flagged = sum(1 for j in cell if scoring.is_flagged(j))
    prefs = [v["pref"] - 1 for v in items.values()]
    wins, losses = sum(p > 0.5 for p in prefs), sum(p < 0.5 for p in prefs)
    called = [j for j in scoring.counted(cell, judge) if j.get("status") == "ok" and not j.get("identical")]
    first = sum(1 for j in called if j.get("first_won") is True)
    failed = [j for j in cell if j.get("status") == "failed"]
    unbuilt = sum(1 for a in answers if not _usable(a)) * repeats
    outputs = [a["output"] for a in answers if isinstance(a.get("output"), str)]
    tokens = [a["tokens"] for a in answers if isinstance(a.get("tokens"), (int, float))]
    out = []
    if prefs:
        out.append(metric_row(EVALUATOR, EVALUATOR, "alpaca_wr_discrete", (wins + (len(prefs) - wins - losses) / 2)
                              / len(prefs) * 100, n=len(prefs), higher_is_better=True, unit="%"))
    out += [_count_row("wins", wins), _count_row("losses", losses), _count_row("ties", len(prefs) - wins - losses),
            _count_row("position_first_won", first, share=first / len(called) if called else None),
            _count_row("fallback", sum(1 for j in cell if j.get("fallback"))),
            _count_row("judged", len(items)),
            _count_row("failed", len(failed) + unbuilt, note=next((j["error"] for j in failed if j.get("error")), None)),
            _count_row("unparseable", sum(1 for j in cell if j.get("status") == "unparseable")),
            _count_row("cached", sum(1 for j in cell if j.get("cached"))),
            _count_row("flagged", flagged, **scoring.flagged_note(flagged, judge)),
            _count_row("answers_cut_off", sum(1 for a in answers if a.get("cut_off") is True))]
    if tokens:
        out.append(_count_row("answer_tokens", statistics.fmean(tokens), unit="tokens"))
    if outputs:
        out.append(_count_row("answer_chars", statistics.fmean(len(t) for t in outputs), unit="chars"))
    return out


def rows(cell: List[Dict[str, Any]], base: Optional[List[Dict[str, Any]]], null: Optional[List[Dict[str, Any]]],
         answers: List[Dict[str, Any]], inputs: Inputs, judge: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Metric rows: win rate (alpaca_eval's describe_head2head), length-controlled win rate, base, null, counts.

    Failed, unparseable and (unless eval.judge.score_flagged) flagged judgments are left
    out of every score (and counted); with repeats each item's preference is the mean of
    its parsed repeats.
    """
    repeats = int(judge.get("repeats") or 1)
    seen = {j.get("index") for j in cell}
    cell = cell + [_tie(a, "cell", r) for a in answers if _usable(a) and a["output"] == a["reference"]
                   and a.get("index") not in seen for r in range(repeats)]  # ties if the caller dropped them
    lc_name = "alpaca_lc_wr" if inputs.difficulty is not None else "alpaca_lc_wr_minimal"
    items = per_item(scoring.counted(cell, judge))
    lc = _lc(items, inputs)
    out = [_wr_row("alpaca_wr", items), _lc_row(lc_name, lc, inputs)]
    if out[0] is not None and out[1] is not None and glm.extreme_change(out[0]["value"], out[1]["value"]):
        out[1]["warning"] = (f"{lc_name} {out[1]['value']:.1f} is far from alpaca_wr {out[0]['value']:.1f} over "
                             f"{out[1]['n']} instructions: as alpaca_eval warns, the length GLM has likely failed")
    by_repeat = [per_item([j for j in scoring.counted(cell, judge) if j.get("repeat") == r]) for r in range(repeats)]
    repeat_wr = [statistics.fmean((v["pref"] - 1) * 100 for v in side.values()) for side in by_repeat if side]
    if repeats > 1 and len(repeat_wr) > 1:
        # judge noise: how far the win rate moves when the same pairs are judged again
        out.append(metric_row(EVALUATOR, EVALUATOR, "alpaca_wr_repeat_sd", statistics.stdev(repeat_wr),
                              n=len(repeat_wr), higher_is_better=False, unit="%"))
    wr = {k: (v["pref"] - 1) * 100 for k, v in items.items()}
    for who, side in (("base", base), ("null", null)):
        if side is None:
            continue
        other = per_item(scoring.counted(side, judge))
        other_lc = _lc(other, inputs)
        out += [_wr_row(f"alpaca_wr_{who}", other), _lc_row(f"{lc_name}_{who}", other_lc, inputs)]
        if who == "base":
            out.append(_delta_row("alpaca_wr_delta", wr, {k: (v["pref"] - 1) * 100 for k, v in other.items()}))
            if lc is not None and other_lc is not None:
                out.append(_delta_row(f"{lc_name}_delta", {k: p * 100 for k, p in lc["by_item"].items()},
                                      {k: p * 100 for k, p in other_lc["by_item"].items()}, bootstrap=False))
    out += _counts(cell, items, answers, judge)
    kept = [row for row in out if row is not None]
    for row in kept:
        row.update(judge_model=judge.get("model"), prompt_hash=inputs.prompt_hash)
    return kept
