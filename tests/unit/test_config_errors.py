"""Every rejected command line ends in one stderr line naming the key, exit status 2, before any worker.

Each case runs ``python -m harness`` in a subprocess: it fails in the parent's preflight
or the sweeper's validation (well under a second), so no model is ever loaded.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from harness.sweep import validate as main
from harness.sweep.validate import validate
from tests.conftest import REPO, make_env
from tests.unit.test_config import _compose

pytestmark = pytest.mark.unit

HASH = "0123456789abcdef0123456789abcdef01234567"
SECRET = "hunter2-SECRET-a1b2c3"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    return make_env(tmp_path_factory.mktemp("harness-cache"))


def harness(args: List[str], env) -> subprocess.CompletedProcess:
    """``python -m harness ARGS`` from the repo root (the caller passes run.root)."""
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


def assert_one_line_error(result: subprocess.CompletedProcess, needle: str) -> str:
    """Exit 2 and exactly one non-empty stderr line, ``error: ...``, containing ``needle``."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert needle in lines[0], lines[0]
    return lines[0]


def assert_nothing_created(root: Path) -> None:
    """No cell, no sweep folder, not even the run root: the command was refused before Hydra ran a job."""
    assert not root.exists(), sorted(str(p) for p in root.rglob("*"))


M = ["-m", "lora.r=8,16"]  # a two-cell grid: each problem is reported once, not once per cell

CASES = [
    # Hydra's composition errors: unknown group option, unknown key, wrong type
    (["quant=3bit"], "quant=3bit: unknown option; choose one of 4bit, 8bit, none"),
    (["model=doesnotexist"], "model=doesnotexist: unknown option; choose one of gemma, llama"),
    (["eval=[nope]"], "eval=[nope]: unknown option nope; choose one of alpaca_eval, domain, lm_eval, mmlu, mt_bench, perplexity"),
    (["train.lr=abc"], "train.lr=abc: must be a number"),
    (["lora.r=1.5"], "lora.r=1.5: must be an integer"),
    (["train.lrr=0.1"], "train.lrr=0.1: unknown key (did you mean train.lr?)"),
    (["+train.lrr=0.1"], "train.lrr=0.1: unknown key (did you mean train.lr?)"),
    (["qant=4bit"], "qant=4bit: unknown key (did you mean quant?)"),
    (["+train.lr=1"], "+train.lr=1: train.lr already exists"),
    (["lora.r=8,16"], "lora.r=8,16: several values are a sweep and need -m"),
    (["train.lr"], "train.lr: cannot parse this override"),
    (["-cn", "nope"], "--config-name=nope: no such config; known: config, data-scaling, data-scaling-tiny, demo, "),
    (["eval.lm_eval.tasks=[x]"], "eval.lm_eval.tasks=[x]: eval.lm_eval is off"),
    # the same in multirun mode, where the sweeper composes every grid point
    (["-m", "quant=3bit,none"], "quant=3bit: unknown option; choose one of 4bit, 8bit, none"),
    ([*M, "model=doesnotexist"], "model=doesnotexist: unknown option"),
    ([*M, "eval=[nope]"], "eval=[nope]: unknown option nope"),
    ([*M, "train.lr=abc"], "train.lr=abc: must be a number"),
    (["-m", "lora.r=8,1.5"], "lora.r=1.5: must be an integer"),
    ([*M, "train.lrr=0.1"], "train.lrr=0.1: unknown key (did you mean train.lr?)"),
    ([*M, "+train.lrr=0.1"], "train.lrr=0.1: unknown key (did you mean train.lr?)"),
    # transformers' option names, checked without importing transformers
    (["train.optimizer=nope"], "train.optimizer=nope: not a transformers optimizer"),
    (["train.lr_scheduler=cosin"], "train.lr_scheduler=cosin: not a transformers learning-rate scheduler (did you mean cosine?)"),
    (["-m", "train.optimizer=adamw_torch,nope"], "train.optimizer=nope: not a transformers optimizer"),
    # a prefix of a name is the likeliest meaning: difflib alone offers grokadamw for adamw
    (["train.optimizer=adamw"], "train.optimizer=adamw: not a transformers optimizer (did you mean adamw_torch?)"),
    (["train.max_st=4"], "train.max_st=4: unknown key (did you mean train.max_steps?)"),
    # 0 is the one epoch-mode value; a negative count is a typo, not "train for epochs"
    (["train.max_steps=-5"], "train.max_steps=-5: must be a positive number of optimizer steps, or 0 to train for train.epochs"),
    (["-m", "train.max_steps=4,-1"], "train.max_steps=-1: must be a positive number of optimizer steps"),
    # names that become folder names
    (["model.name=../../evil"], "model.name=../../evil: names a folder"),
    (["model.name=/tmp/x"], "model.name=/tmp/x: names a folder"),
    (["model.name="], "model.name=: must not be empty"),
    (["model.name=" + "a" * 121], "names a folder: at most 120 characters"),
    (["framework.name=a/b"], "framework.name=a/b: names a folder"),
    (["data.name=.hidden"], "data.name=.hidden: names a folder: must not start with '.'"),
    (["run.sweep=.."], "run.sweep=..: names a folder"),
    (["run.sweep=a/../../b"], "run.sweep=a/../../b: names a folder"),
    (["run.sweep=cells"], "run.sweep=cells: is reserved"),
    ([*M, "model.name=../../evil"], "model.name=../../evil: names a folder"),
    # remote code only at a pinned commit
    (["model=llama", "model.trust_remote_code=true"], "model.revision=main: model.trust_remote_code=true needs a full 40-character commit hash"),
    (["model=llama", "model.trust_remote_code=true", "model.revision=v1.0"], "model.revision=v1.0:"),
]


@pytest.fixture(scope="module")
def rejected(env, tmp_path_factory: pytest.TempPathFactory):
    """Every case of CASES run once, four at a time (each is an interpreter start, mostly imports)."""
    from concurrent.futures import ThreadPoolExecutor

    base = tmp_path_factory.mktemp("rejected")
    roots = [base / f"case{i}" / "runs" for i in range(len(CASES))]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda item: harness([*item[0][0], f"run.root={item[1]}"], env), zip(CASES, roots)))
    return dict(zip(range(len(CASES)), zip(results, roots)))


@pytest.mark.parametrize("case", range(len(CASES)), ids=[" ".join(a)[:60] for a, _ in CASES])
def test_rejected_in_one_line_before_any_worker(case, rejected):
    result, root = rejected[case]
    assert_one_line_error(result, CASES[case][1])
    assert_nothing_created(root)


@pytest.mark.parametrize("mode", [[], M], ids=["run", "multirun"])
@pytest.mark.parametrize("root,needle", [
    ("/", "run.root=/: is a filesystem root"),
    ("/etc/harness", "run.root=/etc/harness: is a filesystem root or a system folder"),
    # checked once resolved: these are /etc and /, however they are spelt
    ("/tmp/r/../../etc", "run.root=/tmp/r/../../etc: is a filesystem root or a system folder (/etc)"),
    ("/tmp/r/../../", "run.root=/tmp/r/../../: is a filesystem root or a system folder (/)"),
])
def test_system_run_root_is_refused(mode, root, needle, env):
    assert_one_line_error(harness([*mode, "train.max_steps=4", "train.eval_every=0", "eval=[]", f"run.root={root}"], env),
                          needle)


def test_a_run_root_linked_to_a_system_folder_is_refused(env, tmp_path):
    link = tmp_path / "runs"
    link.symlink_to("/etc")
    line = assert_one_line_error(harness(["train.max_steps=4", f"run.root={link}"], env), f"run.root={link}: is a")
    assert line.endswith("system folder (/etc); use a folder of your own (default: runs)")


@pytest.mark.parametrize("mode", [[], M], ids=["run", "multirun"])
def test_run_root_that_cannot_be_created(mode, env, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    line = assert_one_line_error(harness([*mode, f"run.root={blocker}/runs"], env), f"run.root={blocker}/runs: cannot create the folder")
    assert "Traceback" not in line


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes to read-only folders")
def test_read_only_run_root(env, tmp_path):
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o500)
    try:
        assert_one_line_error(harness([f"run.root={root}"], env), f"run.root={root}: the folder is not writable")
    finally:
        root.chmod(0o700)


def test_valid_run_root_is_created(tmp_path):
    # a real run would go on to train, so call the preflight itself
    from harness.__main__ import CONF_DIR
    from harness.config.compose import register
    from harness.sweep.preflight import check_command_line

    register()
    root = tmp_path / "new" / "runs"
    check_command_line(["train.max_steps=1", f"run.root={root}"], CONF_DIR)
    assert root.is_dir() and not any(root.iterdir())


@pytest.mark.parametrize(
    "content",
    [
        f"root:$6${SECRET}:19000:0:99999:7:::\n",  # an /etc/shadow look-alike
        f'{{"password": "{SECRET}", "sk-{SECRET}": 1}}\n',  # a credentials file that is JSON
        f"<|im_start|>user\nhi<|im_end|>\n{SECRET}\n<|im_start|>assistant\nyes<|im_end|>\n",
        f"\x00\x01{SECRET}",
        f'{{"messages": [{{"role": "{SECRET} {SECRET}", "content": "x"}}]}}\n',
    ],
    ids=["shadow", "credentials-json", "chatml-stray", "binary", "role"],
)
def test_data_errors_never_echo_file_contents(content, env, tmp_path):
    path = tmp_path / "not-data.txt"
    path.write_text(content)
    line = assert_one_line_error(harness([f"data.path={path}", f"run.root={tmp_path / 'runs'}"], env), str(path))
    assert SECRET not in line and "hunter2" not in line
    assert_nothing_created(tmp_path / "runs")


def test_trust_remote_code_at_a_commit_warns_once_per_model(capsys):
    main._WARNED.clear()
    for _ in range(2):  # the preflight, the sweeper and each job validate: one warning all the same
        validate(_compose(["model=llama", "model.trust_remote_code=true", f"model.revision={HASH}"]))
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        f"warning: model.trust_remote_code=true runs code from meta-llama/Llama-3.1-8B@{HASH} in every worker "
        "of this model; review that commit's Python files first"
    ]


def _bin_only(folder: Path) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "pytorch_model.bin").write_bytes(b"not really a pickle")
    return folder


def test_pickle_only_local_folder_is_refused_unless_allowed(env, tmp_path):
    folder = _bin_only(tmp_path / "model")
    args = ["model=llama", f"model.hub_id={folder}", f"run.root={tmp_path / 'runs'}"]
    line = assert_one_line_error(harness(args, env), f"model.hub_id={folder}: has only pickle weights (pytorch_model.bin)")
    assert "model.allow_pickle=true" in line
    assert_nothing_created(tmp_path / "runs")
    typed, _ = validate(_compose(["model=llama", f"model.hub_id={folder}", "model.allow_pickle=true"]))
    assert typed.model.allow_pickle


def test_worker_loads_safetensors_only(tmp_path):
    # A hub repo with only .bin weights gets past the parent (it cannot look inside); the
    # worker asks transformers for safetensors only and names the key that allows more.
    from harness.backends.hf import HFBackend
    from harness.config.model import ModelConfig
    from harness.config.schema import HarnessConfig
    from harness.errors import ConfigError
    from harness.seams import CellContext

    folder = _bin_only(tmp_path / "model")
    cfg = HarnessConfig(model=ModelConfig(name="local", hub_id=str(folder), tiny=False, allow_pickle=True))
    cfg.model.allow_pickle = False
    backend = HFBackend(cfg, CellContext(cell_dir=tmp_path, cache_dir=tmp_path, device="cpu"))
    with pytest.raises(ConfigError, match="model.allow_pickle=true") as info:
        backend.load_model()
    assert "\n" not in str(info.value)


def test_transformers_name_tables_match_the_installed_transformers():
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    from harness.config.hf_names import LR_SCHEDULERS, OPTIMIZERS

    assert OPTIMIZERS == tuple(o.value for o in OptimizerNames), "regenerate harness/config/hf_names.py"
    assert LR_SCHEDULERS == tuple(s.value for s in SchedulerType), "regenerate harness/config/hf_names.py"


def _imports_after(statement: str) -> List[str]:
    probe = f"import sys\n{statement}\nprint('\\n'.join(sorted(m for m in sys.modules if m.startswith(('harness', 'torch', 'transformers')))))"
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_config_imports_no_evaluator_module():
    loaded = _imports_after("import harness.config.schema")
    assert not [m for m in loaded if m.startswith("harness.evaluators")], loaded
    assert not [m for m in loaded if m.startswith(("torch", "transformers"))], loaded


def test_evaluator_seams_come_from_the_light_module():
    loaded = _imports_after("import harness.evaluators.base, harness.seams")
    assert not [m for m in loaded if m.startswith(("harness.backends", "harness.config", "torch"))], loaded
    from harness.backends.base import CellContext, ModelView
    from harness.evaluators.base import EvalContext
    from harness.seams import CellContext as C
    from harness.seams import EvalContext as E
    from harness.seams import ModelView as V

    assert (CellContext, ModelView, EvalContext) == (C, V, E)


def test_appended_keys_inside_free_dicts_are_kept():
    typed, _ = validate(_compose(["+framework.options.flash=true"]))
    assert typed.framework.options == {"flash": True}
