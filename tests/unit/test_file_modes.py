"""Files and cache folders the harness writes get the user's umask, not tempfile's private 0600 / 0700."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from harness import files
from tests.conftest import REPO

pytestmark = pytest.mark.unit

CHILD = """
import json, os, stat, sys
from pathlib import Path
from harness.evaluators import mmlu_local
from harness.files import make_staging_dir, write_json_atomic
from harness.store.records import new_record
out = Path(sys.argv[1])
write_json_atomic(out / "cell" / "record.json", new_record("c", "ok", {}))
staging = make_staging_dir(".entry.", out)
tasks = mmlu_local.task_folder(mmlu_local.load(sys.argv[2]), out / "cache")
mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)
print(json.dumps({
    "record": mode(out / "cell" / "record.json"),
    "staging": mode(staging),
    "tasks": mode(tasks),
    "task_files": sorted({mode(p) for p in tasks.rglob("*")}),
}))
"""


def _modes(tmp_path: Path, umask: int) -> dict:
    """Modes of what a fresh interpreter, started with ``umask``, writes."""
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path), str(REPO / "tests" / "fixtures" / "mmlu_tiny")],
        cwd=REPO, capture_output=True, text=True, timeout=120, preexec_fn=lambda: os.umask(umask),
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_umask_022_gives_0644_files_and_0755_folders(tmp_path):
    modes = _modes(tmp_path, 0o022)
    assert modes["record"] == 0o644
    assert modes["staging"] == 0o755 and modes["tasks"] == 0o755
    assert set(modes["task_files"]) <= {0o644, 0o755}


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o002, 0o664, 0o775), (0o077, 0o600, 0o700)])
def test_other_umasks_are_honoured(tmp_path, umask, file_mode, dir_mode):
    modes = _modes(tmp_path, umask)
    assert (modes["record"], modes["staging"], modes["tasks"]) == (file_mode, dir_mode, dir_mode)


def test_umask_is_read_without_changing_it():
    current = os.umask(0o022)
    os.umask(current)
    assert files.UMASK == current  # the test process has not changed its umask since import
    assert files._read_umask() == current
    assert os.umask(current) == current  # reading left it as it was


def test_written_file_follows_the_cached_mode(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "FILE_MODE", 0o640)
    files.write_json_atomic(tmp_path / "r.json", {"a": 1})
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o640


def test_share_tree_opens_private_files_and_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "FILE_MODE", 0o644)
    monkeypatch.setattr(files, "DIR_MODE", 0o755)
    (tmp_path / "m" / "sub").mkdir(parents=True)
    weights, script = tmp_path / "m" / "sub" / "w.safetensors", tmp_path / "m" / "run.sh"
    weights.write_bytes(b"x")
    script.write_text("#!/bin/sh\n")
    os.chmod(weights, 0o600), os.chmod(script, 0o700), os.chmod(tmp_path / "m" / "sub", 0o700)
    (tmp_path / "m" / "link").symlink_to(weights)
    files.share_tree(tmp_path / "m")
    mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)
    assert (mode(tmp_path / "m"), mode(tmp_path / "m" / "sub"), mode(weights), mode(script)) == (0o755, 0o755, 0o644, 0o755)
