"""The warm worker's parts that need no template: messages, keys, fingerprints, the mode a cell gets."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

from harness.store import launch
from harness.store import warm as shared
from harness.sweep import warm

pytestmark = pytest.mark.unit


def test_messages_survive_a_stream_that_joins_and_splits_them():
    left, right = socket.socketpair()
    with left, right:
        shared.send(left, {"pid": 12})
        shared.send(left, {"exit": -9})  # two messages in one read
        channel = shared.Channel(right)
        assert channel.receive(timeout=5) == ({"pid": 12}, False)
        assert channel.receive(timeout=5) == ({"exit": -9}, False)
        frame = (7).to_bytes(shared.HEADER, "big") + b'{"a":1}'
        left.sendall(frame[:3])  # a header cut in two, then the body in another read
        assert channel.receive(timeout=0.1) == (None, False)
        left.sendall(frame[3:])
        left.close()
        assert channel.receive(timeout=5) == ({"a": 1}, False)
        assert channel.receive(timeout=5) == (None, True)


def test_descriptors_travel_with_the_first_bytes(tmp_path):
    left, right = socket.socketpair()
    path = tmp_path / "log"
    with left, right, open(path, "wb") as log:
        shared.send(left, {"op": "fork", "env": {"X": "y" * 100_000}}, [log.fileno()])  # larger than one read
        channel = shared.Channel(right)
        message, _ = channel.receive(timeout=5, max_fds=4)
        assert message["env"]["X"] == "y" * 100_000
        (fd,) = channel.fds
        os.write(fd, b"through the socket")
        os.close(fd)
    assert path.read_bytes() == b"through the socket"


def test_the_key_ignores_per_cell_variables_only():
    base = {"HF_HUB_OFFLINE": "1", "PATH": "/bin"}
    key = shared.template_key(sys.executable, base, "/repo")
    per_cell = {**base, launch.SPAWN_TIME_ENV: "1.5", launch.LAUNCH_ENV: "{}", "CUDA_VISIBLE_DEVICES": "3",
                launch.WORKER_ENV: "warm", "PYTEST_CURRENT_TEST": "t"}
    assert shared.template_key(sys.executable, per_cell, "/repo") == key
    # a secret is neither hashed nor held by the template (the child gets it through the request), nor are the
    # harness's own variables, which no module reads when imported
    secret = {**base, "OPENAI_API_KEY": "sk-x", "HF_TOKEN": "hf_x", "HARNESS_CACHE": "/tmp/c"}
    assert shared.template_key(sys.executable, secret, "/repo") == key
    assert shared.template_env(secret) == base
    # read at import time (or the cwd: sys.path[0]): another template
    assert shared.template_key(sys.executable, {**base, "HF_HUB_OFFLINE": "0"}, "/repo") != key
    assert shared.template_key(sys.executable, {**base, "OMP_NUM_THREADS": "1"}, "/repo") != key
    assert shared.template_key(sys.executable, base, "/elsewhere") != key
    assert shared.template_key("/other/bin/python", base, "/repo") != key


def test_the_fingerprint_sees_an_edit_and_names_what_changed(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "a.py").write_text("x = 1\n")
    before = shared._source_digest(package)
    (package / "a.py").write_text("x = 22\n")
    assert shared._source_digest(package) != before
    now = shared.fingerprint()
    assert shared.difference(now, dict(now)) is None
    assert shared.difference(now, {**now, "harness_source": "0"}) == "harness source changed"
    libraries = {**now["libraries"], "torch": "0.0"}
    assert shared.difference(now, {**now, "libraries": libraries}) == "library versions changed (torch)"
    sites = {path: 0 for path in now["site_packages"]}
    assert "pip install" in shared.difference(now, {**now, "site_packages": sites})


def test_auto_is_warm_for_cpu_cells_of_this_environment_only():
    here = Path(sys.executable)
    assert warm.mode("auto", "cpu", here) == ("warm" if warm.supported() else "spawn")
    assert warm.mode("auto", "cuda:NVIDIA H100", here) == "spawn"  # not yet measured warm
    assert warm.mode("spawn", "cpu", here) == "spawn"
    assert warm.mode("warm", "cuda:NVIDIA H100", here) == ("warm" if warm.supported() else "spawn")
    # a framework's own environment (Unsloth patches on import) never shares a template with hf cells
    assert warm.mode("warm", "cpu", Path("/work/.venvs/unsloth/bin/python")) == "spawn"


def test_the_record_says_how_the_worker_started():
    assert launch.worker_kind({launch.WORKER_ENV: "warm"}) == "warm"
    assert launch.worker_kind({launch.WORKER_ENV: "spawn"}) == "spawn"
    assert launch.worker_kind({}) == "spawn"  # python -m harness.worker by hand


def test_a_refusal_is_remembered_until_something_changes(tmp_path, monkeypatch):
    monkeypatch.setattr(shared.tempfile, "gettempdir", lambda: str(tmp_path))
    now = shared.fingerprint()
    from harness.files import write_json_atomic

    write_json_atomic(shared.refusal_path("k"), {"reason": "refusing to fork: 2 thread(s)", "fingerprint": now})
    assert warm._refused("k", now) == "refusing to fork: 2 thread(s)"
    assert warm._refused("k", {**now, "harness_source": "edited"}) is None  # an edit (or pip install) tries again
    assert warm._refused("other", now) is None
    with pytest.raises(warm.WarmUnavailable, match="2 thread"):
        warm._template(Path(sys.executable), {}, "k", now)
    assert (tmp_path / f"harness-{os.getuid()}" / "templates").stat().st_mode & 0o077 == 0
