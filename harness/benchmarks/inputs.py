"""The files a judged benchmark reads: shipped defaults, user files, the AlpacaEval hub set.

Light (no torch, no datasets): both the worker (generation) and the parent (judging)
read questions and references through here. The shipped files are FastChat's public
MT-Bench data and judge prompts and alpaca_eval's judge prompt (assets/SOURCES.md).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from harness.errors import ConfigError

ASSETS = Path(__file__).resolve().parent / "assets"
MT_BENCH_QUESTIONS = "mt_bench_question.jsonl"
MT_BENCH_REFERENCES = "mt_bench_reference_answer_gpt-4.jsonl"
JUDGE_PROMPTS = "judge_prompts.jsonl"
ALPACA_PROMPT = "alpaca_eval_clf.txt"
ALPACA_HUB = {"repo_id": "tatsu-lab/alpaca_eval", "filename": "alpaca_eval_gpt4_baseline.json", "repo_type": "dataset"}
"""AlpacaEval 2.0's reference outputs (gpt4_turbo, 805 instructions) when eval.alpaca_eval.references is null."""


def resolve(path: Optional[str], default_asset: str) -> Path:
    """The user's file (``~`` expanded), or the shipped asset when ``path`` is None."""
    return Path(path).expanduser() if path else ASSETS / default_asset


def file_digest(path: Path) -> str:
    """sha256 of the file's bytes, 16 hex digits: recorded with every score that used the file."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def read_jsonl(path: Path, key: str) -> List[Dict[str, Any]]:
    """One JSON object per non-empty line; a bad line is a one-line ConfigError naming ``key``, file and line."""
    rows: List[Dict[str, Any]] = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"{key}={path}: cannot read ({exc.strerror or exc})") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{key}={path}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise ConfigError(f"{key}={path}:{number}: expected a JSON object per line")
        rows.append(row)
    return rows


def read_records(path: Path, key: str) -> List[Dict[str, Any]]:
    """A JSON list of objects (``.json``) or JSON lines (anything else)."""
    if Path(path).suffix == ".json":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{key}={path}: cannot read ({exc.strerror or exc})") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{key}={path}:{exc.lineno}: not JSON ({exc.msg})") from None
        if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
            raise ConfigError(f"{key}={path}: expected a JSON list of objects")
        return data
    return read_jsonl(path, key)


LIMIT_SEED = 0
"""Seed of the eval.mt_bench.limit sample: fixed, so a limit picks the same questions in every run and sweep."""


def stratified_sample(rows: List[Dict[str, Any]], limit: Optional[int], seed: int = LIMIT_SEED) -> List[Dict[str, Any]]:
    """``limit`` questions spread over the categories, in file order: round-robin over the categories
    (first-seen order), each category's questions in a seeded shuffle. The first N rows would be
    all "writing" in the shipped file. A smaller limit's sample is part of a larger one's."""
    if not limit or limit >= len(rows):
        return list(rows)
    import random

    rng = random.Random(seed)
    by_category: Dict[Any, List[int]] = {}
    for position, row in enumerate(rows):
        by_category.setdefault(row.get("category"), []).append(position)
    queues = []
    for positions in by_category.values():
        rng.shuffle(positions)
        queues.append(positions)
    picked: List[int] = []
    while len(picked) < limit:
        for queue in queues:
            if queue and len(picked) < limit:
                picked.append(queue.pop(0))
    return [rows[i] for i in sorted(picked)]


def mt_bench_questions(path: Optional[str], limit: Optional[int] = None) -> List[Dict[str, Any]]:
    """MT-Bench questions (FastChat question.jsonl: question_id, category, turns); with ``limit``, a seeded
    sample stratified across categories (``stratified_sample``)."""
    key = "eval.mt_bench.questions"
    rows = read_jsonl(resolve(path, MT_BENCH_QUESTIONS), key)
    for number, row in enumerate(rows, 1):
        turns = row.get("turns")
        if "question_id" not in row or not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
            raise ConfigError(f"{key}={path}: question {number} needs question_id and a non-empty list of turns")
        row.setdefault("category", "general")
    return stratified_sample(rows, limit)


def alpaca_references(path: Optional[str]) -> List[Dict[str, Any]]:
    """AlpacaEval reference set: ``instruction`` + ``output`` (+ ``generator``, ``dataset``) per item.

    A local ``.json`` list or JSON lines; None downloads AlpacaEval 2.0's set from the hub
    (needs internet once; huggingface_hub's cache afterwards).
    """
    key = "eval.alpaca_eval.references"
    if path:
        rows = read_records(Path(path).expanduser(), key)
    else:
        try:
            from huggingface_hub import hf_hub_download

            local = hf_hub_download(**ALPACA_HUB)
        except Exception as exc:  # noqa: BLE001 - offline, gated, moved: one line naming the key
            raise ConfigError(f"{key}: cannot fetch {ALPACA_HUB['repo_id']}/{ALPACA_HUB['filename']} from the hub "
                              f"({type(exc).__name__}); give a local file (a JSON list of instruction/output)") from None
        rows = read_records(Path(local), key)
    for number, row in enumerate(rows, 1):
        if not isinstance(row.get("instruction"), str) or not isinstance(row.get("output"), str):
            raise ConfigError(f"{key}={path or ALPACA_HUB['repo_id']}: item {number} needs string instruction and output")
    return rows
