"""MT-Bench single-answer grading, following FastChat's ``fastchat/llm_judge``.

``common.py`` builds the judge prompts and parses ``[[rating]]``; ``show_result.py``
averages the ratings over both turns and all questions, leaving out the unparseable
ones (FastChat's -1). On top of that, this module reports what FastChat does not: a
bootstrap interval over questions, the spread across repeated judgments, the paired
delta against the base model, the score a constant "null" answer gets (arXiv
2410.07137), and counts of failed, unparseable, out-of-range and suspicious judgments.

Where this differs from FastChat, deliberately:

- a rating FastChat cannot read (``[[07]]``, non-ASCII digits such as ``[[٧]]``: its
  ``ast.literal_eval`` raises and the whole run stops) is read as the number it shows (7);
- judgments of flagged answers (fence or verdict markup, ``answer_flags``) are left out of
  the score unless ``eval.judge.score_flagged`` (``harness.judge.scoring``);
- ``eval.judge.strict_range=true`` drops ratings outside 1-10 (FastChat keeps them; so do we by default).

As FastChat: any rating ``[[x]]`` holds is kept (11, 0, 10.5; counted as ``out_of_range``),
turn 2 is judged only for questions with exactly two turns, and the categories math,
reasoning, coding and arena-hard-200 are judged against a reference answer.
"""

from __future__ import annotations

import re
import statistics
from typing import Any, Dict, Hashable, List, Optional, Tuple

from harness.benchmarks.stats import bootstrap_ci, paired_delta
from harness.judge import scoring
from harness.judge.calls import Outcome, Request
from harness.judge.mt_bench_inputs import PROMPTS, Inputs, load_inputs  # noqa: F401 - this module's API
from harness.store.records import metric_row

EVALUATOR = "mt_bench"
SCORE_UNIT = "score (1-10)"
NEED_REF_CATS = ("math", "reasoning", "coding", "arena-hard-200")
"""FastChat's categories judged against a reference answer (common.NEED_REF_CATS)."""
ONE_SCORE = re.compile(r"\[\[(\d+\.?\d*)\]\]")
ONE_SCORE_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")
VERDICT_PATTERN = f"{ONE_SCORE.pattern}|{ONE_SCORE_BACKUP.pattern}"
"""What a judge reply cut off at max_tokens must hold to count (harness.judge.client.reply_fault)."""
RATING_RANGE = (1.0, 10.0)
"""The scale the judge prompt asks for; ratings outside it are kept (FastChat) and counted as out_of_range."""
FENCE = re.compile(r"(?:\[|<\|)(\s*The\s+(?:Start|End)\s+of\s+[^\[\]<>|\n]{1,80}?)(?:\]|\|>)", re.IGNORECASE)
"""Any "[The Start/End of ...]" or "<|The Start/End of ...|>" marker: the fences of FastChat's templates."""
VERDICT = re.compile(r"\[\[?\s*\d+(?:\.\d*)?\s*\]\]?|rating\s*:", re.IGNORECASE)
"""Verdict markup inside an answer: FastChat's rating patterns, or "Rating:"."""
NULL_ANSWER = ("Thank you for your question. Here is a clear, accurate and well-structured answer that addresses "
               "every part of your request in helpful detail.")
"""The null model's answer to every turn: confident, polite, and irrelevant to any question.

arXiv 2410.07137 shows that a constant answer can score high; theirs are crafted to
exploit the template. This one is deliberately plain (no fence, no verdict markup), so
its score measures how much the judge rewards an answer that answers nothing.
"""


def answer_flags(text: str) -> List[str]:
    """Why an answer looks like it games the judge: "fence" (closes the answer's fence), "verdict" (rating markup)."""
    return [flag for flag, pattern in (("fence", FENCE), ("verdict", VERDICT)) if pattern.search(text or "")]


def neutralise(text: str) -> str:
    """The answer with every fence marker turned visibly harmless: "[The End of X]" becomes "(The End of X)"."""
    return FENCE.sub(lambda m: f"({m.group(1)})", text)


def _items(answer: Dict[str, Any], inputs: Inputs, who: str) -> List[Dict[str, Any]]:
    """The turns of one answer to judge: tag, prompt fields, or the reason the turn cannot be judged."""
    qid = answer.get("question_id")
    question = inputs.by_id.get(qid) or {}
    q_turns = question.get("turns") or answer.get("questions") or []
    a_turns = answer.get("turns") or []
    category = question.get("category") or answer.get("category") or "general"
    need_ref = category in NEED_REF_CATS
    ref = inputs.references.get(qid) or []
    items = []
    # FastChat judges turn 1 of every question and turn 2 only of two-turn questions (its
    # multi-turn matches skip len(turns) != 2): a third turn has no judge template
    shown = len(q_turns) or max(len(a_turns), 1)
    for turn in (1, 2) if shown == 2 else (1,):
        texts = a_turns[:turn]
        flags = sorted({flag for text in texts if isinstance(text, str) for flag in answer_flags(text)})
        tag = {"who": who, "question_id": qid, "category": category, "turn": turn,
               "prompt": PROMPTS[(need_ref, turn)], "flagged": bool(flags), "flags": flags}
        reason = None
        if not q_turns:
            reason = f"question {qid} is in neither the questions file nor the answer"
        elif len(texts) < turn or not all(isinstance(t, str) for t in texts):
            reason = f"the answer to question {qid} has no turn {turn}"
        elif need_ref and len(ref) < turn:
            reason = (f"category {category} is judged against a reference answer and {inputs.reference_file} "
                      f"has none for question {qid} turn {turn}")
        fields: Dict[str, str] = {f"ref_answer_{i + 1}": r for i, r in enumerate(ref[:2])}
        if reason is None and turn == 1:
            fields.update(question=q_turns[0], answer=neutralise(texts[0]))
        elif reason is None:
            fields.update(question_1=q_turns[0], question_2=q_turns[1], answer_1=neutralise(texts[0]),
                          answer_2=neutralise(texts[1]))
        items.append({"tag": tag, "fields": fields, "reason": reason})
    return items


def requests(answers: List[Dict[str, Any]], inputs: Inputs, judge: Dict[str, Any], who: str) -> List[Request]:
    """One judge request per answered question, turn (1, 2) and repeat, built as FastChat's run_judge_single does.

    Turns that cannot be judged (no reference for a math/reasoning/coding question, a
    missing turn) get no request; ``skipped`` lists them and ``rows`` counts them as failed.
    """
    repeats = int(judge.get("repeats") or 1)
    out: List[Request] = []
    for answer in answers:
        for item in _items(answer, inputs, who):
            if item["reason"]:
                continue
            prompt = inputs.prompts[item["tag"]["prompt"]]
            user = prompt["prompt_template"].format(**item["fields"])
            for repeat in range(repeats):
                messages = [{"role": "system", "content": prompt["system_prompt"]}, {"role": "user", "content": user}]
                out.append(Request(messages=messages, max_tokens=int(judge.get("max_tokens") or 2048), temperature=0.0,
                                   repeat=repeat, prompt_hash=inputs.prompt_hash, verdict=VERDICT_PATTERN,
                                   tag={**item["tag"], "repeat": repeat}))
    return out


def skipped(answers: List[Dict[str, Any]], inputs: Inputs, judge: Dict[str, Any], who: str) -> List[Dict[str, Any]]:
    """A failed judgment (with its reason as error) for every turn and repeat ``requests`` could not build."""
    repeats = int(judge.get("repeats") or 1)
    return [{**item["tag"], "repeat": repeat, "score": None, "status": "failed", "cached": False,
             "error": item["reason"], "judgment": None}
            for answer in answers for item in _items(answer, inputs, who) if item["reason"] for repeat in range(repeats)]


def parse_rating(text: Optional[str]) -> Optional[float]:
    """FastChat's rating: the first "[[n]]", else the first "[n]", whatever number it holds; None when absent.

    FastChat keeps a rating outside 1-10 (11, 0, 10.5) and so do we (``out_of_range`` tells
    them); "07" or non-ASCII digits, which crash FastChat's ``ast.literal_eval``, read as 7.
    """
    if not text:
        return None
    match = ONE_SCORE.search(text) or ONE_SCORE_BACKUP.search(text)
    if not match:
        return None
    return float(match.group(1))  # float() reads any Unicode decimal digit and leading zeros


def out_of_range(score: Optional[float]) -> bool:
    """A parsed rating outside the 1-10 scale the prompt asks for."""
    return score is not None and not RATING_RANGE[0] <= score <= RATING_RANGE[1]


def judgments(requests: List[Request], outcomes: List[Outcome]) -> List[Dict[str, Any]]:
    """One record per request: its tag, score (None unless parsed), status, cached, error and the judge's text."""
    if len(requests) != len(outcomes):
        raise ValueError(f"{len(requests)} requests but {len(outcomes)} outcomes")
    out = []
    for request, outcome in zip(requests, outcomes):
        score = parse_rating(outcome.text) if outcome.ok else None
        status = "failed" if not outcome.ok else ("ok" if score is not None else "unparseable")
        error = outcome.error if not outcome.ok else (None if score is not None else "no rating [[n]] in the judgment")
        out.append({**request.tag, "score": score, "status": status, "cached": bool(outcome.cached), "error": error,
                    "out_of_range": out_of_range(score), "judgment": outcome.text})
    return out


def null_answers(inputs: Inputs, answers: Optional[List[Dict[str, Any]]] = None) -> List[Dict[str, Any]]:
    """The null model's answers file: NULL_ANSWER for every turn (of the questions in ``answers``, else all)."""
    wanted = {a.get("question_id") for a in answers} if answers is not None else None
    return [{"question_id": q["question_id"], "category": q.get("category", "general"),
             "turns": [NULL_ANSWER] * len(q["turns"]), "tokens": [None] * len(q["turns"]),
             "cut_off": [False] * len(q["turns"]), "temperature": 0.0, "questions": list(q["turns"])}
            for q in inputs.questions if wanted is None or q["question_id"] in wanted]


def counted(judged: Optional[List[Dict[str, Any]]], judge: Dict[str, Any]) -> Optional[List[Dict[str, Any]]]:
    """The judgments that count: flagged ones out (unless score_flagged), out-of-range ones out under strict_range."""
    if judged is None:
        return None
    kept = scoring.counted(judged, judge)
    return [j for j in kept if not j.get("out_of_range")] if judge.get("strict_range") else kept


def _parsed(judged: List[Dict[str, Any]], turn: Optional[int] = None) -> List[Dict[str, Any]]:
    return [j for j in judged if j.get("status") == "ok" and j.get("score") is not None
            and (turn is None or j.get("turn") == turn)]


def _per_question(parsed: List[Dict[str, Any]]) -> Dict[Hashable, float]:
    """Mean score per question: the unit the bootstrap resamples (turns and repeats of a question move together)."""
    scores: Dict[Hashable, List[float]] = {}
    for j in parsed:
        scores.setdefault(j["question_id"], []).append(float(j["score"]))
    return {qid: sum(v) / len(v) for qid, v in scores.items()}


def _score_row(task: str, metric: str, parsed: List[Dict[str, Any]],
               per_q: Optional[Dict[Hashable, float]] = None, value: Optional[float] = None) -> Optional[Dict[str, Any]]:
    """A score row: mean of the parsed judgments, bootstrap se and 95% interval over questions."""
    if not parsed:
        return None
    per_q = _per_question(parsed) if per_q is None else per_q
    scores = [float(j["score"]) for j in parsed]
    # a delta against zero is the mean itself: paired_delta's bootstrap se is the se of the question mean
    spread = paired_delta(per_q, {qid: 0.0 for qid in per_q}) or {}
    row = metric_row(EVALUATOR, task, metric, sum(scores) / len(scores) if value is None else value,
                     stderr=spread.get("se"), n=len(scores), higher_is_better=True, unit=SCORE_UNIT)
    row["ci95"] = bootstrap_ci([per_q[k] for k in sorted(per_q, key=str)])
    return row


def _delta_row(metric: str, cell: List[Dict[str, Any]], base: List[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """cell - base over the questions both have, paired bootstrap over those questions."""
    delta = paired_delta(_per_question(cell), _per_question(base))
    if delta is None:
        return None
    row = metric_row(EVALUATOR, EVALUATOR, metric, delta["delta"], stderr=delta["se"], n=delta["n"],
                     higher_is_better=True, unit=SCORE_UNIT)
    row["ci95"] = [delta["lo"], delta["hi"]] if delta["lo"] is not None else None
    return row


def _turn_mean_row(parsed: List[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """Mean of the two turn means; spread over questions of each question's (turn 1 + turn 2) / 2."""
    one, two = _per_question(_parsed(parsed, 1)), _per_question(_parsed(parsed, 2))
    if not one or not two:
        return None
    value = (statistics.fmean(float(j["score"]) for j in _parsed(parsed, 1))
             + statistics.fmean(float(j["score"]) for j in _parsed(parsed, 2))) / 2
    both = {qid: (one[qid] + two[qid]) / 2 for qid in one if qid in two}
    row = _score_row(EVALUATOR, "mt_bench_turn_mean", parsed, per_q=both or None, value=value)
    return row


def _count_row(metric: str, value: float, unit: str = "count", note: Optional[str] = None, **extra: Any) -> Dict[str, Any]:
    row = metric_row(EVALUATOR, EVALUATOR, metric, value, higher_is_better=False, unit=unit)
    if note:
        row["note"] = note
    row.update(extra)
    return row


def _counts(cell: List[Dict[str, Any]], answers: List[Dict[str, Any]], inputs: Inputs,
            judge: Dict[str, Any]) -> List[Dict[str, Any]]:
    """judged, failed (including turns no request was built for), unparseable, out_of_range, cached, flagged
    (judgments of flagged answers, excluded unless score_flagged), cut-offs, tokens."""
    seen = {(j.get("question_id"), j.get("turn"), j.get("repeat")) for j in cell}
    unbuilt = [j for j in skipped(answers, inputs, judge, "cell")
               if (j["question_id"], j["turn"], j["repeat"]) not in seen]
    failed = [j for j in cell if j.get("status") == "failed"] + unbuilt
    turns: List[Tuple[Dict[str, Any], int]] = [(a, i) for a in answers for i in range(len(a.get("turns") or []))]
    flagged = sum(1 for j in cell if scoring.is_flagged(j))
    cut_off = sum(1 for a, i in turns if i < len(a.get("cut_off") or []) and a["cut_off"][i] is True)
    tokens = [t for a in answers for t in (a.get("tokens") or []) if isinstance(t, (int, float))]
    rows = [_count_row("judged", len(_parsed(counted(cell, judge)))),
            _count_row("failed", len(failed), note=next((j.get("error") for j in failed if j.get("error")), None)),
            _count_row("unparseable", sum(1 for j in cell if j.get("status") == "unparseable")),
            _count_row("out_of_range", sum(1 for j in cell if j.get("out_of_range")),
                       excluded=bool(judge.get("strict_range"))),
            _count_row("cached", sum(1 for j in cell if j.get("cached"))),
            _count_row("flagged", flagged, **scoring.flagged_note(flagged, judge)),
            _count_row("answers_cut_off", cut_off)]
    if tokens:
        rows.append(_count_row("answer_tokens", sum(tokens) / len(tokens), unit="tokens"))
    return rows


def rows(cell: List[Dict[str, Any]], base: Optional[List[Dict[str, Any]]], null: Optional[List[Dict[str, Any]]],
         answers: List[Dict[str, Any]], inputs: Inputs, judge: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Metric rows of one cell's judgments (FastChat show_result.py's score, plus spread, deltas, null, counts).

    Scores use ``counted`` judgments only; the counts are over all of them.
    """
    every = cell
    cell, base, null = counted(cell, judge), counted(base, judge), counted(null, judge)
    parsed = _parsed(cell)
    out = [_score_row(EVALUATOR, "mt_bench", parsed),
           _score_row(EVALUATOR, "mt_bench_turn1", _parsed(cell, 1)),
           _score_row(EVALUATOR, "mt_bench_turn2", _parsed(cell, 2)),
           _turn_mean_row(parsed)]
    for category in sorted({j.get("category") for j in parsed}, key=str):
        out.append(_score_row(str(category), "mt_bench", [j for j in parsed if j.get("category") == category]))
    repeat_means = [statistics.fmean(float(j["score"]) for j in parsed if j.get("repeat") == r)
                    for r in sorted({j.get("repeat") for j in parsed}, key=str)]
    if int(judge.get("repeats") or 1) > 1 and len(repeat_means) > 1:
        # judge noise: how far the overall score moves when the same answers are judged again
        out.append(metric_row(EVALUATOR, EVALUATOR, "mt_bench_repeat_sd", statistics.stdev(repeat_means),
                              n=len(repeat_means), higher_is_better=False, unit=SCORE_UNIT))
    if base is not None:
        for metric, turn in (("mt_bench", None), ("mt_bench_turn1", 1), ("mt_bench_turn2", 2)):
            out.append(_score_row(EVALUATOR, f"{metric}_base", _parsed(base, turn)))
            out.append(_delta_row(f"{metric}_delta", _parsed(cell, turn), _parsed(base, turn)))
    if null is not None:
        out.append(_score_row(EVALUATOR, "mt_bench_null", _parsed(null)))
    out.extend(_counts(every, answers, inputs, judge))
    kept = [row for row in out if row is not None]
    for row in kept:
        row.update(judge_model=judge.get("model"), prompt_hash=inputs.prompt_hash)
    return kept
