"""The README's ``python -m harness.data check`` sample is what the command prints on the repository's fixture."""

from __future__ import annotations

import pytest

from harness.data.__main__ import main
from tests.readme_blocks import REPO, output_blocks

pytestmark = pytest.mark.unit
CHECKS = [c for c in output_blocks() if c.argv[:4] == ["python", "-m", "harness.data", "check"]]


def test_the_readme_shows_a_data_check_sample():
    assert CHECKS, "README: the data check's sample output is a ``console output`` block"
    assert all(c.expected for c in CHECKS)


@pytest.mark.parametrize("command", CHECKS, ids=lambda c: f"README:{c.line}")
def test_data_check_sample_is_what_the_command_prints(command, cache_dir, monkeypatch, capsys):
    monkeypatch.chdir(REPO)  # the README's path is relative to the repository root
    # a private cache: the shown lines do not depend on it, and a test must not write the user's
    status = main(["harness.data", *command.argv[3:], f"run.cache_dir={cache_dir}"])
    out = capsys.readouterr().out.splitlines()
    assert status == 0
    assert out[: len(command.expected)] == command.expected, f"README line {command.line}: $ {command.text}"
