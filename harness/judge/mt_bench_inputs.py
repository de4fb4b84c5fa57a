"""MT-Bench's judge-side inputs: questions (the eval.mt_bench.limit sample), reference answers, judge prompts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Hashable, List, Optional

from harness.benchmarks.inputs import (
    JUDGE_PROMPTS,
    MT_BENCH_REFERENCES,
    file_digest,
    mt_bench_questions,
    read_jsonl,
    resolve,
    stratified_sample,
)
from harness.errors import ConfigError, safe_repr

FIELDS = {1: ("question", "answer", "ref_answer_1", "ref_answer_2"),
          2: ("question_1", "question_2", "answer_1", "answer_2", "ref_answer_1", "ref_answer_2")}
"""The template fields FastChat's run_judge_single fills, per turn."""
PROMPTS = {(False, 1): "single-v1", (True, 1): "single-math-v1",
           (False, 2): "single-v1-multi-turn", (True, 2): "single-math-v1-multi-turn"}
"""(needs a reference, turn) -> judge prompt name, as FastChat's gen_judgment.py picks them."""


@dataclass
class Inputs:
    """Judge-side MT-Bench files: questions, reference answers, judge prompts, and the file digests."""

    questions: List[Dict[str, Any]]
    """FastChat question.jsonl rows (question_id, category, turns)."""
    references: Dict[Hashable, List[str]]
    """question_id -> reference answer per turn (FastChat reference_answer/gpt-4.jsonl: choices[0].turns)."""
    prompts: Dict[str, Dict[str, Any]]
    """Judge prompt name -> FastChat judge_prompts.jsonl row (system_prompt, prompt_template, ...)."""
    prompt_hash: str
    """file_digest of the judge prompt file: recorded with every score and part of the judge cache key."""
    reference_hash: str
    """file_digest of the reference answer file."""
    reference_file: str = ""
    """Where the reference answers came from, for messages."""
    by_id: Dict[Hashable, Dict[str, Any]] = field(default_factory=dict)
    """question_id -> question."""
    total: Optional[int] = None
    """Questions in the file before eval.mt_bench.limit."""


def load_inputs(block: Dict[str, Any]) -> Inputs:
    """Questions, reference answers and judge prompts named by an eval.mt_bench block (shipped ones for None)."""
    every = mt_bench_questions(block.get("questions"))
    questions = stratified_sample(every, block.get("limit"))
    ref_path = resolve(block.get("references"), MT_BENCH_REFERENCES)
    references: Dict[Hashable, List[str]] = {}
    for number, row in enumerate(read_jsonl(ref_path, "eval.mt_bench.references"), 1):
        try:
            qid, turns = row["question_id"], row["choices"][0]["turns"]
        except (KeyError, IndexError, TypeError):
            turns = None
        if not isinstance(turns, list) or not all(isinstance(t, str) for t in turns):
            raise ConfigError(f"eval.mt_bench.references={ref_path}: record {number} needs question_id and "
                              f"choices[0].turns, a list of strings (FastChat reference answer format)")
        references[qid] = turns
    prompt_path = resolve(block.get("judge_prompts"), JUDGE_PROMPTS)
    prompts = {row.get("name"): row for row in read_jsonl(prompt_path, "eval.mt_bench.judge_prompts")}
    missing = [name for name in PROMPTS.values() if name not in prompts]
    if missing:
        raise ConfigError(f"eval.mt_bench.judge_prompts={prompt_path}: no judge prompt named {', '.join(missing)} "
                          f"(needs FastChat's {', '.join(PROMPTS.values())})")
    for (_, turn), name in PROMPTS.items():
        prompt = prompts[name]
        if not isinstance(prompt.get("system_prompt"), str) or not isinstance(prompt.get("prompt_template"), str):
            raise ConfigError(f"eval.mt_bench.judge_prompts={prompt_path}: prompt {name} needs string "
                              f"system_prompt and prompt_template")
        if prompt.get("output_format", "[[rating]]") != "[[rating]]":
            raise ConfigError(f"eval.mt_bench.judge_prompts={prompt_path}: prompt {name} has output_format "
                              f"{safe_repr(prompt.get('output_format'))}; only FastChat's \"[[rating]]\" is parsed")
        try:
            prompt["prompt_template"].format(**dict.fromkeys(FIELDS[turn], ""))
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(f"eval.mt_bench.judge_prompts={prompt_path}: prompt {name} has a template field FastChat "
                              f"does not fill ({type(exc).__name__}: {exc})") from None
    return Inputs(questions=questions, references=references, prompts=prompts, prompt_hash=file_digest(prompt_path),
                  reference_hash=file_digest(ref_path), reference_file=str(ref_path),
                  by_id={q["question_id"]: q for q in questions}, total=len(every))
