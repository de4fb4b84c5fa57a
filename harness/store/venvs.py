"""Framework environments: the interpreter a cell's worker runs in.

A framework whose libraries cannot share the harness's environment (Unsloth pins older
transformers/trl and patches them on import; LitGPT brings its own training loop) names
its own virtual environment in ``framework.env``; its worker is that environment's
``bin/python -m harness.worker`` -- or, with ``framework.runner`` (LitGPT), the worker stays in the
harness's environment and only the runner that trains runs with that environment's Python. The environment's path is not part of a cell's identity,
but its Python and library versions are (``identity.environment_fingerprint``), so a
rebuilt environment never silently reuses old results. A cell whose environment is not
built ends ``unsupported`` with the one command that builds it, and the sweep goes on.

Light: the parent resolves interpreters and reads another environment's library versions
with one subprocess per environment (cached by the interpreter's path and mtime).
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

REPO = Path(__file__).resolve().parents[2]
"""Relative framework.env paths are taken from the repository root (where make builds them)."""
_VERSIONS = (
    "import json, platform, importlib.metadata as m\n"
    "def v(n):\n"
    "    try:\n        return m.version(n)\n"
    "    except m.PackageNotFoundError:\n        return None\n"
    "print(json.dumps({'python': platform.python_version(), 'libraries': {n: v(n) for n in %r}}))\n"
)


def env_dir(framework: Dict[str, Any]) -> Optional[Path]:
    """The framework's environment folder (absolute), or None when it runs in the harness's own."""
    env = framework.get("env")
    if not env:
        return None
    path = Path(str(env)).expanduser()
    return path if path.is_absolute() else REPO / path


def runner_python(framework: Dict[str, Any]) -> Path:
    """``<env>/bin/python`` of the framework's environment, else this interpreter."""
    folder = env_dir(framework)
    return folder / "bin" / "python" if folder is not None else Path(sys.executable)


def interpreter(framework: Dict[str, Any]) -> Path:
    """The Python that runs this framework's workers: its environment's, unless only its ``runner`` trains there
    (LitGPT: the worker stays in the harness's environment and starts the runner with ``runner_python``)."""
    return Path(sys.executable) if framework.get("runner") else runner_python(framework)


def setup_command(framework: Dict[str, Any]) -> str:
    """The one command that builds the framework's environment."""
    return str(framework.get("setup") or f"make setup-{framework.get('name')}")


def env_problem(framework: Dict[str, Any]) -> Optional[str]:
    """One line saying why this framework cannot run here (its environment is not built), or None."""
    folder = env_dir(framework)
    if folder is None or (folder / "bin" / "python").exists():
        return None
    return (f"framework={framework.get('name')}: its environment {framework.get('env')} is not built; "
            f"build it with: {setup_command(framework)}")


FRAMEWORK_LIBRARIES = ("litgpt", "lightning")
"""Read in framework environments besides harness.store.environment.LIBRARIES, and kept only where installed (so adding one
here does not change the fingerprint of an environment that lacks it)."""


@functools.lru_cache(maxsize=16)
def _versions(python: str, stamp: Tuple[int, int]) -> Dict[str, Any]:
    from harness.store.environment import LIBRARIES

    out = subprocess.run([python, "-c", _VERSIONS % (LIBRARIES + FRAMEWORK_LIBRARIES,)], capture_output=True, text=True,
                         timeout=120)
    if out.returncode != 0:
        return {"python": None, "libraries": {}, "error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    found = json.loads(out.stdout)
    found["libraries"] = {k: v for k, v in found["libraries"].items() if v is not None or k not in FRAMEWORK_LIBRARIES}
    return found


def env_versions(framework: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """{"python", "libraries"} of the framework's own environment; None for the harness's environment or a missing one."""
    folder = env_dir(framework)
    python = folder / "bin" / "python" if folder is not None else None
    if python is None or not python.exists():
        return None
    site = next(iter(sorted(folder.glob("lib/python*/site-packages"))), folder)
    stat = site.stat()  # pip installs touch site-packages: a rebuilt environment is read again
    return _versions(str(python), (stat.st_mtime_ns, stat.st_ino))
