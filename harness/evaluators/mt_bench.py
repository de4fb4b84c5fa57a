"""MT-Bench answers, generated in the worker the way FastChat's gen_model_answer does.

Every question is answered turn by turn: turn 1 of all questions first (batched, one
batch run per sampling temperature), then turn 2, whose conversation holds the model's
own turn-1 answer. The temperature is FastChat's per category. The answers go to
``answers.jsonl`` in the evaluation folder (for the untrained base: its baseline cache
folder) in the format the judge reads (``harness.judge.mt_bench``); the rows reported
here are only about the answers (length, cut-offs). Scores come from the judge.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from harness.config.generation import MtBenchEvalConfig
from harness.evaluators.generation import generate, mean, write_jsonl
from harness.seams import EvalContext, ModelView
from harness.store.records import metric_row

TEMPERATURE = {
    "writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0,
    "coding": 0.0, "reasoning": 0.0, "stem": 0.1, "humanities": 0.1, "arena-hard-200": 0.0,
}
"""FastChat's temperature_config (fastchat/llm_judge/common.py); any other category samples at 0.7."""
DEFAULT_TEMPERATURE = 0.7
ANSWERS = "answers.jsonl"


def temperature(category: str) -> float:
    """The sampling temperature FastChat uses for a question category."""
    return TEMPERATURE.get(category, DEFAULT_TEMPERATURE)


class MtBenchEvaluator:
    """Writes the model's two-turn MT-Bench answers (answers.jsonl) for the judge; rows: answer length, cut-offs."""

    name = "mt_bench"

    def __init__(self, config: MtBenchEvalConfig) -> None:
        self.config = config
        self.questions: Optional[List[Dict[str, Any]]] = None

    def prepare(self, ctx: Optional[EvalContext] = None) -> None:
        """Read the questions before the model loads, so a bad file fails fast."""
        from harness.benchmarks.inputs import mt_bench_questions

        self.questions = mt_bench_questions(self.config.questions, self.config.limit)

    def baseline_identity(self, ctx: EvalContext) -> Dict[str, Any]:
        """The question file's content: the base's answers are generated once per base and question set."""
        from harness.benchmarks.inputs import MT_BENCH_QUESTIONS, file_digest, resolve

        return {"questions": file_digest(resolve(self.config.questions, MT_BENCH_QUESTIONS))}

    def answer(self, view: ModelView) -> List[Dict[str, Any]]:
        """One answers-file row per question, all turns answered."""
        if self.questions is None:
            self.prepare()
        cfg = self.config
        answers = [
            {"question_id": q["question_id"], "category": q["category"], "turns": [], "tokens": [], "cut_off": [],
             "temperature": temperature(q["category"]), "questions": list(q["turns"])}
            for q in self.questions or []
        ]
        for turn in range(max((len(a["questions"]) for a in answers), default=0)):
            pending = [a for a in answers if len(a["questions"]) > turn]
            for temp in sorted({a["temperature"] for a in pending}):
                group = [a for a in pending if a["temperature"] == temp]
                conversations = [_conversation(a, turn) for a in group]
                for a, out in zip(group, generate(view, conversations, cfg.max_new_tokens, temp, cfg.batch_size, cfg.seed)):
                    a["turns"].append(out["text"])
                    a["tokens"].append(out["tokens"])
                    a["cut_off"].append(out["cut_off"])
        return answers

    def evaluate(self, view: ModelView, ctx: EvalContext) -> List[Dict[str, Any]]:
        """Generate and write answers.jsonl; rows mt_bench_answer_tokens and mt_bench_cut_off (n = answered turns)."""
        answers = self.answer(view)
        write_jsonl(ctx.cell_dir / ANSWERS, answers)
        tokens = [n for a in answers for n in a["tokens"]]
        cut = sum(c for a in answers for c in a["cut_off"])
        from harness.benchmarks.stats import sem

        return [
            metric_row("mt_bench", "mt_bench", "mt_bench_answer_tokens", mean(tokens), stderr=sem(tokens), n=len(tokens),
                       higher_is_better=False, unit="tokens"),
            metric_row("mt_bench", "mt_bench", "mt_bench_cut_off", cut, n=len(tokens), higher_is_better=False, unit="count"),
        ]


def _conversation(answer: Dict[str, Any], turn: int) -> List[Dict[str, str]]:
    """User turns up to ``turn``, each earlier one followed by the model's own answer."""
    messages: List[Dict[str, str]] = []
    for i in range(turn + 1):
        messages.append({"role": "user", "content": answer["questions"][i]})
        if i < turn:
            messages.append({"role": "assistant", "content": answer["turns"][i]})
    return messages
