"""Read records from files, folders or a hub dataset; normalise and validate them.

Files are read by content, not by name: a JSON array (``[...]``), JSONL (one object per
line) or raw ChatML text. Every record carries where it came from (``file:line``, plus
the record index in an array, or ``dataset[split] row N``), and every problem names it.
Pure Python apart from ``datasets`` for hub ids (imported only there), so the parent
process can run ``check_source`` before it spawns any worker.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from harness.config.data import DataColumnsConfig, DataConfig
from harness.data.formats import CHATML_START, Fields, detect_format, normalise
from harness.data.validate import Conversation, ProblemLog, RecordProblem
from harness.errors import DataError, HubUnavailableError

BUNDLED_PATH = Path(__file__).resolve().parent / "bundled" / "chat.jsonl"
FOLDER_SUFFIXES = (".json", ".jsonl", ".txt", ".chatml")
"""Files a data folder contributes (hidden files are left out)."""
SURROGATE = re.compile("[\udc80-\udcff]")  # undecodable bytes, kept by the surrogateescape decoder
WHITESPACE = re.compile(r"\s*")
# In a ChatML text file a conversation ends at <|endoftext|> or at a blank line between turns.
CHATML_BREAK = re.compile(r"<\|endoftext\|>|(?<=<\|im_end\|>)[ \t]*\r?\n[ \t]*\r?\n\s*(?=<\|im_start\|>)")


@dataclass
class Item:
    """One raw record: where it is, the parsed value, or the problem that stopped parsing."""

    where: str
    row: Any = None
    problem: Optional[RecordProblem] = None


@dataclass
class Example:
    """A valid, normalised conversation and where it came from."""

    conversation: Conversation
    where: str


@dataclass
class Loaded:
    """Everything the loader found: valid examples, formats per file, invalid records."""

    source: str
    examples: List[Example]
    formats: Dict[str, str]
    records: int
    problems: ProblemLog
    detected: bool = True


def resolve_path(path: Optional[str]) -> Path:
    """The file or folder a data config points at; None means the bundled chat set."""
    return BUNDLED_PATH if path is None else Path(path).expanduser()


def source_files(path: Path) -> List[Path]:
    """The file itself, or a folder's data files (recursively, sorted, hidden ones left out)."""
    if path.is_file():
        return [path]
    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file()
        and p.suffix.lower() in FOLDER_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    if not files:
        raise DataError(f"{path}: folder has no {', '.join(FOLDER_SUFFIXES)} files")
    return files


def _decode(path: Path) -> Tuple[str, bool]:
    """(text, has undecodable bytes); bad bytes survive as surrogates so they can be located."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return raw.decode("utf-8", "surrogateescape"), True


def _bad_utf8(text: str) -> RecordProblem:
    """The problem for a record holding undecodable bytes, with the column of the first one."""
    found = SURROGATE.search(text)
    byte = ord(found.group()) - 0xDC00  # surrogateescape keeps byte b as U+DC00+b
    return RecordProblem("bad_utf8", f"not valid UTF-8 (byte 0x{byte:02x} at column {found.start() + 1})")


def _json_error(exc: json.JSONDecodeError) -> str:
    """``<reason> at column N``: some of json's reasons already end in "at" ("Unterminated string starting at")."""
    return f"{exc.msg.removesuffix(' at')} at column {exc.colno}"


def read_file(path: Path) -> Tuple[str, List[Item]]:
    """(kind, items) of one file; kind is json, jsonl or chatml, decided from the content."""
    text, has_bad_bytes = _decode(path)
    head = text.lstrip()[:1]
    if not head:
        raise DataError(f"{path}: file is empty")
    if head == "[":
        return "json", list(_read_array(path, text, has_bad_bytes))
    if head == "{":
        return "jsonl", list(_read_jsonl(path, text, has_bad_bytes))
    if text.lstrip().startswith(CHATML_START):
        return "chatml", list(_read_chatml_text(path, text, has_bad_bytes))
    # never quote the content: data.path may point at a file that is not data (and is secret)
    kind = "binary data" if has_bad_bytes or "\x00" in text else "text"
    raise DataError(
        f"{path}:1: not a JSON array, JSONL or ChatML text: the file is {kind} whose first non-blank character "
        "is not '[', '{' or '<|im_start|>'"
    )


def _read_jsonl(path: Path, text: str, has_bad_bytes: bool) -> Iterator[Item]:
    """One item per non-blank line."""
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        if has_bad_bytes and SURROGATE.search(line):
            yield Item(where, problem=_bad_utf8(line))
            continue
        try:
            yield Item(where, json.loads(line))
        except json.JSONDecodeError as exc:
            yield Item(where, problem=RecordProblem("invalid_json", f"invalid JSON ({_json_error(exc)})"))


def _read_array(path: Path, text: str, has_bad_bytes: bool) -> Iterator[Item]:
    """One item per element of a top-level JSON array, each with the line it starts on.

    Elements are decoded one at a time so each knows its line; a syntax error makes the
    rest of the array unreadable, so it is a DataError even with on_error=skip.
    """
    decoder = json.JSONDecoder()
    position = WHITESPACE.match(text, text.index("[") + 1).end()
    line, counted = 1, 0
    index = 0
    while position < len(text) and text[position] != "]":
        line += text.count("\n", counted, position)
        counted = position
        try:
            value, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path}:{exc.lineno}: invalid JSON ({_json_error(exc)}); "
                "a broken JSON array cannot be read past it"
            ) from None
        where = f"{path}:{line} (record {index})"
        if has_bad_bytes and SURROGATE.search(text, position, end):
            yield Item(where, problem=_bad_utf8(text[position:end]))
        else:
            yield Item(where, value)
        index += 1
        position = WHITESPACE.match(text, end).end()
        if position < len(text) and text[position] == ",":
            position = WHITESPACE.match(text, position + 1).end()
        elif position >= len(text) or text[position] != "]":
            number = text.count("\n", 0, position) + 1
            raise DataError(f"{path}:{number}: invalid JSON (expected ',' or ']' after record {index - 1})")
    if position >= len(text):
        raise DataError(f"{path}:{text.count(chr(10)) + 1}: invalid JSON (the array is not closed; truncated file?)")
    if text[position + 1 :].strip():
        number = text.count("\n", 0, position) + 1
        raise DataError(f"{path}:{number}: invalid JSON (extra data after the closing ']')")


def _read_chatml_text(path: Path, text: str, has_bad_bytes: bool) -> Iterator[Item]:
    """One item ``{"text": chunk}`` per conversation of a raw ChatML text file."""
    position = 0
    breaks = [(m.start(), m.end()) for m in CHATML_BREAK.finditer(text)] + [(len(text), len(text))]
    for start, end in breaks:
        chunk = text[position:start]
        if chunk.strip():
            offset = position + (len(chunk) - len(chunk.lstrip()))
            where = f"{path}:{text.count(chr(10), 0, offset) + 1}"
            if has_bad_bytes and SURROGATE.search(chunk):
                yield Item(where, problem=_bad_utf8(chunk))
            else:
                yield Item(where, {"text": chunk.strip()})
        position = end


def file_fingerprint(files: List[Path]) -> str:
    """Hash of the files' names and bytes: the data-content part of cache keys."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def _normalise_group(items: List[Item], fmt: str, fields: Fields, log: ProblemLog) -> List[Example]:
    """Valid examples of one file (or hub split); problems go to ``log``."""
    examples = []
    for item in items:
        if item.problem is not None:
            log.add(item.where, item.problem)
            continue
        try:
            examples.append(Example(normalise(item.row, fmt, fields), item.where))
        except RecordProblem as problem:
            log.add(item.where, problem)
    return examples


def _group_format(data: DataConfig, kind: str, label: str, items: List[Item], fields: Fields) -> str:
    """The format of one file: ChatML for text files, data.format if named, else detected."""
    if kind == "chatml":
        if data.format not in ("auto", "chatml"):
            raise DataError(f"{label}: file is raw ChatML text, but data.format={data.format}")
        return "chatml"
    if data.format != "auto":
        return data.format
    try:
        return detect_format((item.row for item in items if item.problem is None), fields, label)
    except RecordProblem as problem:
        raise DataError(str(problem)) from None


class FileSource:
    """A file or a folder of files."""

    def __init__(self, data: DataConfig) -> None:
        self.data = data
        self.path = resolve_path(data.path)
        self.files = source_files(self.path)
        self.label = str(self.path)

    def fingerprint(self) -> str:
        """Hash of the content (names and bytes)."""
        return file_fingerprint(self.files)

    def groups(self) -> Iterator[Tuple[str, str, List[Item]]]:
        """(label, kind, items) per file."""
        for path in self.files:
            kind, items = read_file(path)
            yield str(path), kind, items


class HubSource:
    """A dataset read with ``datasets.load_dataset`` (a hub id, or a local dataset folder)."""

    def __init__(self, data: DataConfig, cache_dir: Optional[Path]) -> None:
        self.data = data
        self.label = f"{data.hub_id}[{data.hub_split}]"
        self.dataset = _load_hub(data, cache_dir)

    def fingerprint(self) -> str:
        """The dataset's own fingerprint (a hash of its files and processing)."""
        return f"hub:{self.data.hub_id}:{self.data.hub_config}:{self.data.hub_split}:{self.dataset._fingerprint}"

    def groups(self) -> Iterator[Tuple[str, str, List[Item]]]:
        """One group: every row of the split."""
        items = [Item(f"{self.label} row {index}", row) for index, row in enumerate(self.dataset)]
        yield self.label, "hub", items


def _load_hub(data: DataConfig, cache_dir: Optional[Path]) -> Any:
    """The split as a ``datasets.Dataset``; unreachable or unknown datasets fail in one line."""
    import datasets

    kwargs: Dict[str, Any] = {"split": data.hub_split}
    if data.hub_config:
        kwargs["name"] = data.hub_config
    if data.hub_revision:
        kwargs["revision"] = data.hub_revision
    if cache_dir is not None:
        kwargs["cache_dir"] = str(Path(cache_dir) / "datasets")
    try:
        return datasets.load_dataset(data.hub_id, **kwargs)
    except (OSError, ConnectionError, ValueError) as exc:  # DatasetNotFoundError is a FileNotFoundError
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HubUnavailableError(
            f"data.hub_id={data.hub_id}: cannot load split {data.hub_split!r} ({type(exc).__name__}: {reason[:200]}); "
            "check the id, data.hub_config and data.hub_split, or run where the hub is reachable"
        ) from None


def open_source(data: DataConfig, cache_dir: Optional[Path] = None) -> Any:
    """The FileSource or HubSource a data config names (``data=synthetic`` has none: see harness.data.synthetic)."""
    if data.synthetic:
        raise DataError("data=synthetic generates token ids; it has no records to read (harness.data.synthetic.build)")
    return HubSource(data, cache_dir) if data.hub_id else FileSource(data)


def load_conversations(data: DataConfig, source: Any = None, cache_dir: Optional[Path] = None) -> Loaded:
    """Read, detect formats, normalise and validate; with on_error=fail raise on the first problem."""
    source = source or open_source(data, cache_dir)
    fields, plain = Fields(data.columns.mapping()), Fields({})
    log = ProblemLog(data.on_error)
    examples: List[Example] = []
    formats: Dict[str, str] = {}
    records = 0
    for label, kind, items in source.groups():
        records += len(items)
        if items and all(item.problem is not None for item in items):
            # not one record parsed (bad UTF-8, broken JSON): say why, not that no format can be detected
            for item in items:
                log.add(item.where, item.problem)
            continue
        group_fields = plain if kind == "chatml" else fields
        fmt = _group_format(data, kind, label, items, group_fields)
        formats[label] = fmt
        examples.extend(_normalise_group(items, fmt, group_fields, log))
    log.raise_if_failing()
    if not examples:
        raise DataError(log.nothing_valid(source.label))
    return Loaded(
        source=source.label,
        examples=examples,
        formats=formats,
        records=records,
        problems=log,
        detected=data.format == "auto",
    )


def check_source(data: DataConfig) -> None:
    """Parent-side check of a local data source before any worker starts (hub ids are left to the worker).

    Cheap enough to run once per distinct data config of a sweep: it reads and validates,
    without filters or tokenization, and is memoised on the files' names, sizes and mtimes.
    """
    if data.hub_id or data.synthetic:  # synthetic rows are generated in the worker; there is nothing to read
        return
    files = source_files(resolve_path(data.path))
    stamp = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files)
    _check_cached(data.path, stamp, data.format, tuple(sorted(data.columns.mapping().items())), data.on_error)


@functools.lru_cache(maxsize=32)
def _check_cached(path: Optional[str], stamp: tuple, fmt: str, columns: tuple, on_error: str) -> None:
    """Memoised body of check_source (``stamp`` only keys the cache): validate as a worker would."""
    load_conversations(DataConfig(path=path, format=fmt, columns=DataColumnsConfig(**dict(columns)), on_error=on_error))
