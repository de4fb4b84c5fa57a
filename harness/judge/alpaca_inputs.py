"""AlpacaEval's judge-side inputs: the judge prompt (alpaca_eval's chatml markup) and the difficulty table."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from harness.benchmarks.inputs import ALPACA_PROMPT, file_digest, resolve
from harness.errors import ConfigError

PLACEHOLDERS = ("instruction", "output_1", "output_2")
CHAT_TURN = re.compile(r"<\|im_start\|>([^\n]*)\n(.*?)<\|im_end\|>", re.DOTALL)
ROLES = ("system", "user", "assistant")


@dataclass
class Inputs:
    """Judge-side AlpacaEval files: the judge prompt (as chat messages) and the optional difficulty table."""

    prompt_path: Path
    """The judge prompt file used (shipped alpaca_eval_clf.txt or eval.alpaca_eval.judge_prompt)."""
    prompt_hash: str
    """Digest of the prompt file; part of every cache key and every scored row."""
    messages: List[Dict[str, str]]
    """The prompt as chat messages with ``{instruction}``, ``{output_1}``, ``{output_2}`` left in."""
    difficulty: Optional[Dict[int, float]] = None
    """instruction_difficulty by item index (eval.alpaca_eval.difficulty); None: the minimal LC formula."""
    difficulty_hash: Optional[str] = None
    """Digest of the difficulty file."""
    seed: int = 0
    """eval.alpaca_eval.seed: picks which items are shown model-first."""


def parse_prompt(text: str, where: str) -> List[Dict[str, str]]:
    """Chat messages from ``<|im_start|>role ... <|im_end|>`` markup (alpaca_eval's prompt_to_chatml).

    Text without the markup is one user message. ``where`` ("key=path") names the file in errors.
    """
    turns = CHAT_TURN.findall(text)
    if "<|im_start|>" not in text:
        messages = [{"role": "user", "content": text.strip()}]
    elif not turns or len(turns) != text.count("<|im_start|>"):
        raise ConfigError(f"{where}: every <|im_start|>ROLE line needs a matching <|im_end|>")
    else:
        messages = []
        for role, content in turns:
            role = role.split()[0] if role.split() else ""  # alpaca_eval allows "system name=..."
            if role not in ROLES:
                raise ConfigError(f"{where}: unknown chat role {role!r} (expected one of {', '.join(ROLES)})")
            messages.append({"role": role, "content": content.strip()})
    joined = "\n".join(m["content"] for m in messages)
    missing = [f"{{{p}}}" for p in PLACEHOLDERS if f"{{{p}}}" not in joined]
    if missing:
        raise ConfigError(f"{where}: judge prompt lacks {', '.join(missing)}")
    return messages


def _difficulty(path: str) -> Dict[int, float]:
    """index -> instruction_difficulty from a CSV (alpaca_eval's instruction_difficulty.csv layout)."""
    import pandas as pd

    key = f"eval.alpaca_eval.difficulty={path}"
    try:
        table = pd.read_csv(Path(path).expanduser())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{key}: cannot read as CSV ({type(exc).__name__}: {exc})".splitlines()[0]) from None
    if "instruction_difficulty" not in table.columns:
        raise ConfigError(f"{key}: needs columns index,instruction_difficulty")
    index = table["index"] if "index" in table.columns else table[table.columns[0]]
    try:
        return {int(i): float(d) for i, d in zip(index, table["instruction_difficulty"])}
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: index must be integers and instruction_difficulty numbers") from None


def load_inputs(block: Dict[str, Any]) -> Inputs:
    """The judge prompt (shipped or eval.alpaca_eval.judge_prompt), its digest, and the difficulty table."""
    path = resolve(block.get("judge_prompt"), ALPACA_PROMPT)
    where = f"eval.alpaca_eval.judge_prompt={path}"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read ({exc.strerror or exc})") from None
    table = block.get("difficulty")
    return Inputs(prompt_path=path, prompt_hash=file_digest(path), messages=parse_prompt(text, where),
                  difficulty=_difficulty(table) if table else None,
                  difficulty_hash=file_digest(Path(table).expanduser()) if table else None,
                  seed=int(block.get("seed") or 0))
