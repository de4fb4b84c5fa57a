"""Fast half of the README test (the slow half runs the commands: tests/integration/test_readme.py).

Every ``python -m harness`` command of a ``bash cpu`` block still composes and validates
as the entry point's preflight does, so a renamed key or sweep breaks ``make test``.
"""

from __future__ import annotations

import pytest

from harness.config.compose import register
from harness.sweep.preflight import check_command_line
from tests.readme_blocks import REPO, TINY, bash_commands, console_commands, cpu_blocks

pytestmark = pytest.mark.unit
CONF_DIR = str(REPO / "conf")
RUNS = [c for c in bash_commands() if c.harness_args is not None]


def test_blocks_are_found_and_parsed():
    kinds = {kind for kind, _, _ in cpu_blocks()}
    assert kinds == {"bash", "console"}
    assert RUNS and all(c.expected is None for c in RUNS)
    assert all(c.expected and all(line.startswith("error: ") for line in c.expected) for c in console_commands())


@pytest.mark.parametrize("command", RUNS, ids=lambda c: f"README:{c.line}")
def test_harness_command_composes(command, tmp_path):
    register()
    check_command_line(command.harness_args + TINY + [f"run.root={tmp_path / 'runs'}"], CONF_DIR)


def test_parsing_joins_continuations_and_reads_console_output():
    text = "```bash cpu\n# c\npython -m harness \\\n  lora.r=8  # x\n```\n```console cpu\n$ harness a=1\nerror: a\n```\n"
    (run,) = bash_commands(text)
    assert run.harness_args == ["lora.r=8"] and run.line == 3
    (shown,) = console_commands(text)
    assert shown.harness_args == ["a=1"] and shown.expected == ["error: a"]
    assert cpu_blocks("```bash\nmake setup\n```\n") == []
