"""The house's rooms as checked contracts: lint-imports keeps them, and breaks them on the circles they replaced."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "harness"
LINT = Path(sys.executable).with_name("lint-imports")
SHARED_MODULES = {"__init__.py", "__main__.py", "errors.py", "files.py", "seams.py", "text.py"}
"""The modules every room uses; everything else at the top of harness/ is a package (a room)."""


def _lint(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` with the project's contracts over the ``harness`` package found under ``root``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(REPO)])}
    return subprocess.run([str(LINT), str(REPO / "pyproject.toml"), "--no-cache", "--no-logo"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def lint_available() -> None:
    """lint-imports is a dev dependency (make setup installs it)."""
    if not LINT.exists():
        pytest.skip("lint-imports is not installed in this Python (make setup installs it)")


def test_the_project_keeps_every_contract(lint_available):
    result = _lint(REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


# Each line recreates, on a copy of the package, one of the circles the rooms replaced (issue: three import circles).
CIRCLES: Dict[str, Tuple[str, str, str]] = {
    # config -> eval_blocks -> data/load -> config: the schema reading the data room again
    "config-data": ("config/schema.py", "from harness.data.load import check_source  # noqa: F401\n",
                    "Rooms in layers"),
    # store -> migrate -> identity -> env -> launch -> store: the store reaching up into the parent
    "store-sweep": ("store/environment.py", "from harness.sweep.launch import placement  # noqa: F401\n",
                    "Rooms in layers"),
    # judge/cache <-> judge/client: two modules of one room importing each other
    "judge-cache-client": ("judge/cache.py", "from harness.judge.client import JudgeClient  # noqa: F401\n",
                           "No import circles"),
}


def _with_import(tmp_path: Path, module: str, line: str) -> Path:
    """A copy of the package with ``line`` added after the imports of ``module``."""
    root = tmp_path / "copy"
    shutil.copytree(PACKAGE, root / "harness", ignore=shutil.ignore_patterns("__pycache__", "bundled", "assets"))
    shutil.copytree(REPO / "tools", root / "tools", ignore=shutil.ignore_patterns("__pycache__"))
    path = root / "harness" / module
    tree = ast.parse(path.read_text())
    last = max(n.end_lineno for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom)))
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:last] + [line] + lines[last:]))
    return root


@pytest.mark.parametrize("name", sorted(CIRCLES))
def test_a_recreated_circle_breaks_a_contract(lint_available, tmp_path, name):
    module, line, contract = CIRCLES[name]
    result = _lint(_with_import(tmp_path, module, line))
    assert result.returncode != 0, result.stdout[-3000:]
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, result.stdout[-3000:]


def test_a_function_level_torch_import_is_allowed_but_a_module_level_one_is_not(lint_available, tmp_path):
    lazy = _with_import(tmp_path / "lazy", "text.py", "def _later() -> None:\n    import torch  # noqa: F401\n")
    assert _lint(lazy).returncode == 0
    eager = _with_import(tmp_path / "eager", "text.py", "import torch  # noqa: F401,E402\n")
    result = _lint(eager)
    assert result.returncode != 0
    assert "harness.sweep imports torch at module import" in result.stdout


def _modules() -> List[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_module_imports_a_private_name_of_another():
    found = []
    for path in _modules():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("harness"):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.append(f"{path.relative_to(REPO)}:{node.lineno} imports {node.module}.{alias.name}")
    assert not found, "\n".join(found)


def test_the_top_of_the_package_holds_rooms_and_the_shared_modules():
    loose = sorted(p.name for p in PACKAGE.iterdir() if p.is_file() and p.suffix == ".py")
    assert set(loose) <= SHARED_MODULES, loose
    rooms = [p for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("__")]
    for room in rooms:
        init = room / "__init__.py"
        assert init.exists(), f"{room.name} is not a package"
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc.split()) >= 10, f"harness/{room.name}/__init__.py needs a paragraph saying what it owns"


def test_every_room_is_a_layer_of_the_contract():
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c for c in config["contracts"] if c["id"] == "layers")["layers"]
    named = {part.strip() for layer in layers for part in layer.split("|")}
    rooms = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in PACKAGE.glob("*.py") if not p.name.startswith("__")}
    assert rooms | modules <= named, sorted((rooms | modules) - named)


def test_the_litgpt_runner_needs_none_of_the_harness_dependencies():
    """It runs in LitGPT's environment, where the harness is installed without its dependencies."""
    code = ("import sys\n"
            "for name in ('hydra', 'omegaconf', 'yaml', 'pandas', 'transformers', 'trl', 'peft', 'datasets'):\n"
            "    sys.modules[name] = None\n"
            "import harness.frameworks.litgpt_runner\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
