"""Input formats: detect which one a record is in, and normalise it to a conversation.

Every format becomes the internal form: a list of ``{"role", "content"}`` turns with roles
system, user and assistant. A normaliser raises ``RecordProblem`` (a reason code and a
message without location); the caller adds the file and line. Field names go through
``data.columns``, so ``{instruction: question}`` reads the instruction from ``question``.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional

from harness.data.validate import Conversation, RecordProblem, check_turns
from harness.errors import safe_repr

# Role names the formats use for our three roles. OpenAI's "developer" is its newer name
# for system; ShareGPT dumps use "gpt", and some use the name of the bot.
MESSAGE_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    "model": "assistant",
}
CHATML_TURN = re.compile(r"<\|im_start\|>([^\n]*)\n(.*?)<\|im_end\|>", re.DOTALL)
CHATML_START = "<|im_start|>"
# Fields that identify a format; a record must have all of a format's fields to vote for it.
SIGNATURES = {
    "messages": ("messages",),
    "sharegpt": ("conversations",),
    "alpaca": ("instruction", "output"),
    "prompt_completion": ("prompt", "completion"),
    "chatml": ("text",),
}
DETECT_SAMPLE = 100
# Field names quoted in a message: identifiers only. The file may not be data at all (a
# mistyped data.path), and its keys, unlike a column name, could be anything.
FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")
"""Records looked at to detect a file's format (majority vote, so one odd record does not decide)."""


class Fields:
    """Field access through the ``data.columns`` mapping, with messages that name the column."""

    def __init__(self, columns: Optional[Mapping[str, str]]) -> None:
        self.columns = dict(columns or {})

    def name(self, field: str) -> str:
        """The column that holds the harness field ``field``."""
        return self.columns.get(field, field)

    def has(self, row: Mapping[str, Any], field: str) -> bool:
        """True when the row has the column for ``field``."""
        return self.name(field) in row

    def get(self, row: Mapping[str, Any], field: str, required: bool = True) -> Any:
        """The value of ``field``; a missing required field is a ``missing_field`` problem."""
        column = self.name(field)
        if column in row:
            return row[column]
        if not required:
            return None
        mapped = f" (data.columns.{field})" if column != field else ""
        raise RecordProblem("missing_field", f"missing field '{column}'{mapped}")

    def text(self, row: Mapping[str, Any], field: str, required: bool = True) -> Optional[str]:
        """A string field; anything else is a ``non_string_content`` problem."""
        value = self.get(row, field, required)
        if value is None and not required:
            return None
        if not isinstance(value, str):
            raise RecordProblem(
                "non_string_content", f"field '{self.name(field)}' must be a string, got {type(value).__name__}"
            )
        return value


def _turn_field(turn: Mapping[str, Any], fields: Fields, preferred: str, fallback: Optional[str]) -> Any:
    """``preferred`` field of a turn, or ``fallback`` when only that one is there (ShareGPT variants)."""
    if fallback is not None and not fields.has(turn, preferred) and fields.has(turn, fallback):
        return fields.get(turn, fallback)
    return fields.get(turn, preferred)


def _turns(turns: Any, fields: Fields, keys: tuple, roles: Dict[str, str], container: str) -> Conversation:
    """Map a list of turn objects to harness turns; roles outside ``roles`` are problems.

    ``keys`` is (role field, content field, role fallback, content fallback).
    """
    if not isinstance(turns, list) or not turns:
        raise RecordProblem("bad_conversation", f"'{container}' must be a non-empty list of turns")
    role_key, content_key, role_fallback, content_fallback = keys
    out = []
    for index, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise RecordProblem("bad_conversation", f"turn {index} is not an object")
        role = _turn_field(turn, fields, role_key, role_fallback)
        mapped = roles.get(role.lower()) if isinstance(role, str) else None
        if mapped is None:
            raise RecordProblem(
                "unknown_role", f"turn {index} has unknown role {safe_repr(role)} (expected {', '.join(sorted(roles))})"
            )
        out.append({"role": mapped, "content": _turn_field(turn, fields, content_key, content_fallback)})
    return out


def from_messages(row: Mapping[str, Any], fields: Fields) -> Conversation:
    """OpenAI/ChatML messages: ``{"messages": [{"role", "content"}, ...]}``."""
    keys = ("role", "content", None, None)
    return _turns(fields.get(row, "messages"), fields, keys, MESSAGE_ROLES, fields.name("messages"))


def from_sharegpt(row: Mapping[str, Any], fields: Fields) -> Conversation:
    """ShareGPT: ``{"conversations": [{"from": "human"|"gpt"|"system", "value"}, ...]}``."""
    role = "role" if "role" in fields.columns else "from"  # data.columns.role renames ShareGPT's "from" too
    content = "content" if "content" in fields.columns else "value"
    keys = (role, content, "role" if role == "from" else None, "content" if content == "value" else None)
    return _turns(fields.get(row, "conversations"), fields, keys, SHAREGPT_ROLES, fields.name("conversations"))


def _system(row: Mapping[str, Any], fields: Fields) -> List[Dict[str, Any]]:
    """An optional system turn from a ``system`` field (empty means none)."""
    system = fields.get(row, "system", required=False)
    return [{"role": "system", "content": system}] if system not in (None, "") else []


def from_alpaca(row: Mapping[str, Any], fields: Fields) -> Conversation:
    """Alpaca: instruction (+ optional input) -> output; extra fields (generator, dataset) are ignored."""
    instruction = fields.text(row, "instruction")
    extra = fields.text(row, "input", required=False)
    prompt = f"{instruction}\n\n{extra}" if extra and extra.strip() else instruction
    return _system(row, fields) + [
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": fields.get(row, "output")},
    ]


def from_prompt_completion(row: Mapping[str, Any], fields: Fields) -> Conversation:
    """Prompt/completion pairs: ``{"prompt", "completion"}``."""
    return _system(row, fields) + [
        {"role": "user", "content": fields.get(row, "prompt")},
        {"role": "assistant", "content": fields.get(row, "completion")},
    ]


def parse_chatml(text: str) -> Conversation:
    """Turns of a raw ChatML string (``<|im_start|>role\\ncontent<|im_end|>`` ...)."""
    turns, position = [], 0
    for match in CHATML_TURN.finditer(text):
        _outside(text[position : match.start()])
        turns.append({"role": match.group(1).strip(), "content": match.group(2)})
        position = match.end()
    rest = text[position:]
    if CHATML_START in rest:
        raise RecordProblem("bad_chatml", "a <|im_start|> turn has no <|im_end|>")
    _outside(rest)
    if not turns:
        raise RecordProblem("bad_chatml", "no <|im_start|>role ... <|im_end|> turns")
    for index, turn in enumerate(turns):
        if turn["role"] not in MESSAGE_ROLES:
            raise RecordProblem(
                "unknown_role", f"turn {index} has unknown role {safe_repr(turn['role'])} (expected system, user, assistant)"
            )
        turn["role"] = MESSAGE_ROLES[turn["role"]]
    return turns


def _outside(text: str) -> None:
    """Text between ChatML turns must be blank (or an end-of-text marker)."""
    stray = text.replace("<|endoftext|>", "").strip()
    if stray:
        raise RecordProblem("bad_chatml", f"text outside a turn ({len(stray)} characters not inside <|im_start|> ... <|im_end|>)")


def from_chatml(row: Mapping[str, Any], fields: Fields) -> Conversation:
    """Raw ChatML in a ``text`` field (text files arrive here as ``{"text": chunk}``)."""
    return parse_chatml(fields.text(row, "text"))


NORMALISERS: Dict[str, Callable[[Mapping[str, Any], Fields], Conversation]] = {
    "messages": from_messages,
    "sharegpt": from_sharegpt,
    "alpaca": from_alpaca,
    "prompt_completion": from_prompt_completion,
    "chatml": from_chatml,
}


def normalise(row: Any, fmt: str, fields: Fields) -> Conversation:
    """One record in format ``fmt`` -> a validated conversation; raises RecordProblem."""
    if not isinstance(row, dict):
        raise RecordProblem("not_an_object", f"record is a JSON {type(row).__name__}, not an object")
    return check_turns(NORMALISERS[fmt](row, fields))


def _votes(row: Any, fields: Fields) -> List[str]:
    """Formats whose identifying fields are all in ``row``."""
    if not isinstance(row, dict):
        return []
    found = [fmt for fmt, keys in SIGNATURES.items() if all(fields.has(row, key) for key in keys)]
    if "chatml" in found and len(found) > 1:  # a plain "text" column beside real fields is not ChatML
        found.remove("chatml")
    if found == ["chatml"] and CHATML_START not in str(row.get(fields.name("text"), "")):
        return []
    return found


def _field_names(keys: List[str]) -> str:
    """Up to 8 field names for a message; names that are not name-like are counted, not quoted."""
    names = [key for key in keys if FIELD_NAME.fullmatch(key)]
    others = len(keys) - len(names)
    shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    return ", ".join(filter(None, [shown, f"{others} other name(s)" if others else ""]))


def evaluation_set(row: Any) -> Optional[str]:
    """What a record of a known evaluation set (questions without answers to train on) is, else None."""
    if not isinstance(row, dict):
        return None
    turns = row.get("turns")
    if isinstance(turns, list) and turns and all(isinstance(turn, str) for turn in turns):
        return "MT-Bench questions: 'turns' holds only the user's prompts, with no answers to train on"
    if {"question", "choices", "answer"} <= set(row):
        return ("multiple-choice questions in MMLU's question/choices/answer form; "
                "score models on them with eval=[perplexity,mmlu] eval.lm_eval.mmlu_dir=FOLDER")
    return None


def detect_format(rows: Iterable[Any], fields: Fields, where: str) -> str:
    """The format most of the first records have the fields of; DataError-worthy problem if none."""
    counts: Dict[str, int] = {}
    first_keys: Optional[List[str]] = None
    looks_like: Optional[str] = None
    for number, row in enumerate(rows):
        if number >= DETECT_SAMPLE:
            break
        if first_keys is None and isinstance(row, dict):
            first_keys = sorted(row)
            looks_like = evaluation_set(row)
        for fmt in _votes(row, fields):
            counts[fmt] = counts.get(fmt, 0) + 1
    if not counts and looks_like:  # no data.columns= mapping can make answers appear
        raise RecordProblem(
            "unknown_format",
            f"{where}: this looks like an evaluation set, not training data ({looks_like}); "
            "training needs records with an assistant reply (messages, conversations, instruction+output, "
            "prompt+completion or ChatML text)",
        )
    if not counts:
        shown = _field_names(first_keys) if first_keys else "no JSON objects"
        raise RecordProblem(
            "unknown_format",
            f"{where}: cannot detect the format (records have fields: {shown}); expected messages, conversations "
            "(ShareGPT), instruction+output (Alpaca), prompt+completion or ChatML text; "
            "set data.format= or map your fields with data.columns=",
        )
    return max(SIGNATURES, key=lambda fmt: counts.get(fmt, 0))
