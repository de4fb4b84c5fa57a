"""A tiny model built into the cache is readable by whoever shares the cache (the umask decides, not mkdtemp)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration

CHILD = """
import json, os, stat, sys
from pathlib import Path
from harness.config.model import ModelConfig
from harness.models.tiny import ensure_tiny_model
folder = ensure_tiny_model(ModelConfig(), Path(sys.argv[1]))
mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)
print(json.dumps({"folder": mode(folder), "files": {p.name: mode(p) for p in folder.iterdir()}}))
"""


def test_tiny_model_folder_follows_the_umask(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=300,
        preexec_fn=lambda: os.umask(0o022), env={**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    modes = json.loads(result.stdout.strip().splitlines()[-1])
    assert modes["folder"] == 0o755
    assert modes["files"] and set(modes["files"].values()) == {0o644}, modes["files"]
