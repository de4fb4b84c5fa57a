"""The README's CPU-runnable code blocks, as the README tests read them.

A fenced block whose info string carries the word ``cpu`` is a promise that a newcomer can
type it on any CPU machine after ``make setup`` and ``source .venv/bin/activate``:

- ``bash cpu``: every line (after joining ``\\`` continuations; blank and comment lines
  left out) is a command that must exit 0;
- ``console cpu``: ``$ command`` lines, each followed by exactly the output it prints;
- ``console output``: one ``$ command`` line, then the first lines of what it prints (a sample of a
  command's report; a test of the command's area runs it and compares: ``output_blocks``).

``python -m harness`` / ``harness`` runs get tiny training and a private ``run.root``
appended (``tiny_run``), so the whole README runs in minutes and writes nothing into the
repository.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
TINY = ["train.max_steps=2", "train.eval_every=0", "train.measure_warmup_steps=1"]
"""Appended to every ``python -m harness`` run: enough to train, evaluate and summarise."""


@dataclass
class Command:
    """One command of a block: what the README says, where, and (console blocks) what it prints."""

    text: str
    line: int
    expected: Optional[List[str]] = None
    argv: List[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.argv = shlex.split(self.text, comments=True)

    @property
    def harness_args(self) -> Optional[List[str]]:
        """The arguments of a ``python -m harness`` / ``harness`` run (not harness.plan etc.), else None."""
        argv = self.argv
        if argv[:3] == ["python", "-m", "harness"]:
            return argv[3:]
        if argv[:1] == ["harness"]:
            return argv[1:]
        return None


def cpu_blocks(text: Optional[str] = None) -> List[tuple]:
    """(kind, first line number, body) of every block tagged ``cpu``; kind is bash or console."""
    text = README.read_text(encoding="utf-8") if text is None else text
    found = []
    for match in FENCE.finditer(text):
        words = match.group(1).split()
        if "cpu" in words[1:] and words[0] in ("bash", "console"):
            found.append((words[0], text.count("\n", 0, match.start(2)) + 1, match.group(2)))
    return found


def bash_commands(text: Optional[str] = None) -> List[Command]:
    """Every command of the ``bash cpu`` blocks, in README order."""
    commands = []
    for kind, first, body in cpu_blocks(text):
        if kind != "bash":
            continue
        pending, start = "", 0
        for offset, raw in enumerate(body.splitlines()):
            if not pending:
                start = first + offset
            if raw.rstrip().endswith("\\"):
                pending += raw.rstrip()[:-1] + " "
                continue
            line = (pending + raw).strip()
            pending = ""
            if line and not line.startswith("#"):
                commands.append(Command(line, start))
    return commands


def console_commands(text: Optional[str] = None) -> List[Command]:
    """Every ``$ command`` of the ``console cpu`` blocks, with the lines it must print."""
    commands: List[Command] = []
    for kind, first, body in cpu_blocks(text):
        if kind != "console":
            continue
        for offset, raw in enumerate(body.splitlines()):
            if raw.startswith("$ "):
                commands.append(Command(raw[2:].strip(), first + offset, expected=[]))
            elif commands and commands[-1].line >= first and raw.strip():
                commands[-1].expected.append(raw.rstrip())
    return commands


def output_blocks(text: Optional[str] = None) -> List[Command]:
    """The command of each ``console output`` block, with the lines it shows (the start of what it prints)."""
    text = README.read_text(encoding="utf-8") if text is None else text
    found = []
    for match in FENCE.finditer(text):
        if match.group(1).split() != ["console", "output"]:
            continue
        line = text.count("\n", 0, match.start(2)) + 1
        first, *shown = match.group(2).rstrip("\n").splitlines()
        if not first.startswith("$ "):
            raise ValueError(f"README line {line}: a console output block starts with '$ command'")
        found.append(Command(first[2:].strip(), line, expected=shown))
    return found


def tiny_run(command: Command, root: Path) -> str:
    """The shell line to run: a harness run gets TINY and ``run.root=ROOT`` appended; anything else as written."""
    if command.harness_args is None:
        return shlex.join(command.argv)
    return shlex.join(command.argv + TINY + [f"run.root={root}"])
