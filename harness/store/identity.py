"""What a cell is: the identity that decides its trained weights, and each evaluation's key.

A cell id is a readable prefix plus a hash of everything that decides the result of
training, computed in the parent without torch:

- the resolved training config in canonical form: every block except ``run`` (how a cell
  is run) and ``eval`` (scored separately, see ``eval_key``), minus labels that change
  nothing (``data.name``, ``data.path``: the content hash stands for the data), and minus
  every key still at its schema default, so a key added later with a default does not
  invalidate the cells already stored;
- the data's content (a hash of the files' names and bytes; for a hub dataset its id,
  config, split and revision);
- the model's weights: a hub id at a revision, a local folder's fingerprint (file names,
  sizes and safetensors headers), a tiny model's build key or a random-weight model's
  architecture (``model.weights=random``, which is also in the config part);
- the device class (``cpu`` or ``cuda:<device name>``): a CPU record is never reused as a
  GPU result; likewise ``run.memory_cap_gib`` when set (an emulated smaller device,
  ``harness.measure.memcap``): a result under a cap is never reused as one without it, or the reverse;
- a hash of the framework environment's library versions.

Each evaluator's result is keyed by its name, its config block and the inputs it
declares (a local MMLU folder's content), on top of the cell id.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from harness.files import stable_digest

IDENTITY_VERSION = 2
"""Bump when what identifies a cell changes meaning, so no stored cell is reused wrongly.

2: the train/validation/test split follows data.split_seed, no longer train.seed."""
NOT_IDENTITY = {"run": None, "eval": None, "report": None, "logger": None, "data": {"name": None, "path": None},
                "framework": {"env": None, "setup": None},  # where an environment lives is not what it contains
                "dist": {"port": None}}  # where ranks meet is not what they train
"""Config keys that never change trained weights (None = the whole block)."""
SAFETENSORS_HEADER_MAX = 1 << 24


def _drop(tree: Dict[str, Any], spec: Dict[str, Any]) -> Dict[str, Any]:
    """``tree`` without the keys that ``spec`` names."""
    out = {}
    for key, value in tree.items():
        if key in spec and spec[key] is None:
            continue
        out[key] = _drop(value, spec[key]) if key in spec and isinstance(value, dict) else value
    return out


def _without_defaults(tree: Any, defaults: Any) -> Any:
    """``tree`` minus every leaf equal to the schema default at the same place."""
    if not isinstance(tree, dict) or not isinstance(defaults, dict):
        return tree
    out = {}
    for key, value in tree.items():
        if key in defaults and value == defaults[key]:
            continue
        if key in defaults and isinstance(value, dict) and isinstance(defaults[key], dict):
            value = _without_defaults(value, defaults[key])
            if not value:
                continue
        out[key] = value
    return out


@functools.lru_cache(maxsize=1)
def schema_defaults() -> Dict[str, Any]:
    """The schema's default config as plain data (no interpolation resolved: run.* is not used)."""
    from omegaconf import OmegaConf

    from harness.config.schema import HarnessConfig

    return OmegaConf.to_container(OmegaConf.structured(HarnessConfig), resolve=False)


def canonical_training_config(config: Dict[str, Any]) -> Dict[str, Any]:
    """The keys of a resolved config that decide the trained weights, defaults left out (and the whole ``dist``
    block of a one-process cell, whose other dist keys change nothing)."""
    if (config.get("dist") or {}).get("strategy", "none") == "none":
        config = {key: value for key, value in config.items() if key != "dist"}
    return _without_defaults(_drop(config, NOT_IDENTITY), _drop(schema_defaults(), NOT_IDENTITY))


def _stamp(files: Tuple[Path, ...]) -> Tuple[Tuple[str, int, int], ...]:
    return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)


@functools.lru_cache(maxsize=64)
def _files_digest(stamp: Tuple[Tuple[str, int, int], ...]) -> str:
    """Content hash of files; ``stamp`` (path, size, mtime) keys the memo within one process."""
    from harness.data.load import file_fingerprint

    return file_fingerprint([Path(path) for path, _, _ in stamp])


def data_fingerprint(data: Dict[str, Any]) -> str:
    """The data's identity: a content hash for files and folders, id@revision for a hub dataset, the generator and
    shape for synthetic rows (their tokens also follow the tokenizer, which the model's fingerprint covers)."""
    if data.get("synthetic"):
        from harness.data.synthetic import fingerprint

        return fingerprint(data.get("seq_len"), data.get("examples"))
    if data.get("hub_id"):
        revision = data.get("hub_revision") or "unpinned"
        return f"hub:{data['hub_id']}:{data.get('hub_config')}:{data.get('hub_split')}@{revision}"
    from harness.data.load import resolve_path, source_files

    return "sha256:" + _files_digest(_stamp(tuple(source_files(resolve_path(data.get("path"))))))


def _safetensors_header(path: Path) -> bytes:
    """The JSON header of a safetensors file (names, dtypes, shapes, offsets): cheap and identifying."""
    with open(path, "rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        return handle.read(min(size, SAFETENSORS_HEADER_MAX))


def folder_fingerprint(folder: Path) -> str:
    """A local model folder's fingerprint: file names and sizes, safetensors headers, small files' bytes."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        size = path.stat().st_size
        digest.update(f"{path.relative_to(folder)}\0{size}\0".encode())
        if path.suffix == ".safetensors":
            digest.update(_safetensors_header(path))
        elif size <= 1 << 20:  # config, tokenizer and template files are small and decide results too
            digest.update(path.read_bytes())
    return digest.hexdigest()


def model_fingerprint(model: Dict[str, Any]) -> str:
    """The base weights' identity: tiny build key, random-weight architecture, local folder fingerprint, or hub id@revision."""
    if model.get("tiny"):
        from harness.config.model import ModelConfig
        from harness.models.tiny import tiny_model_key

        return "tiny:" + tiny_model_key(ModelConfig(**model))
    if model.get("weights") == "random":  # built from the numbers: no hub id, no revision to resolve
        from harness.config.model import ModelConfig
        from harness.models.random_weights import random_fingerprint

        return "random:" + random_fingerprint(ModelConfig(**model))
    hub_id = str(model.get("hub_id"))
    local = Path(os.path.expanduser(hub_id))
    if local.is_dir():
        return "folder:" + folder_fingerprint(local)
    return f"hub:{hub_id}@{resolve_revision(hub_id, str(model.get('revision')))}"


COMMIT = re.compile(r"[0-9a-f]{40}")


@functools.lru_cache(maxsize=32)
def resolve_revision(hub_id: str, revision: str) -> str:
    """The commit a hub revision (branch or tag) points at, so a moved branch makes a new cell.

    Read from the local Hugging Face cache's refs (no network); else asked of the hub when
    it answers; else the revision name as given, marked unresolved.
    """
    if COMMIT.fullmatch(revision):
        return revision
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    ref = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=hub_id, repo_type="model") / "refs" / revision
    try:
        cached = ref.read_text().strip()
        if COMMIT.fullmatch(cached):
            return cached
    except OSError:
        pass
    from harness.models.hub import hub_reachable

    if hub_reachable(os.environ.get("HF_ENDPOINT", "https://huggingface.co")):
        try:
            from huggingface_hub import HfApi

            return HfApi().model_info(hub_id, revision=revision, timeout=10).sha or f"{revision}:unresolved"
        except Exception:  # noqa: BLE001 - gated or unknown: the worker reports it; the id keeps the name
            pass
    return f"{revision}:unresolved"


@functools.lru_cache(maxsize=4)
def _visible_gpu_name() -> Optional[str]:
    """Name of the first GPU this process may use (nvidia-smi, honouring CUDA_VISIBLE_DEVICES), or None."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and not visible.strip():
        return None
    command = ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"]
    if visible:
        command += ["-i", visible.split(",")[0].strip()]
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.strip().splitlines() if out.returncode == 0 else []
    return lines[0].strip() if lines else None


@functools.lru_cache(maxsize=4)
def visible_gpu_count() -> int:
    """GPUs this process may use: CUDA_VISIBLE_DEVICES's entries when set, else nvidia-smi's list (0 without one)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([entry for entry in visible.split(",") if entry.strip()])
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return 0
    return len(out.stdout.strip().splitlines()) if out.returncode == 0 else 0


def device_class(requested: str) -> str:
    """``cpu`` or ``cuda:<device name>``, as the worker will run: auto takes the GPU when one is visible."""
    if requested == "cpu":
        return "cpu"
    name = _visible_gpu_name()
    if name is None:
        return "cpu" if requested == "auto" else "cuda:unknown"
    return f"cuda:{name}"


def environment_digest(python: str, libraries: Dict[str, Optional[str]]) -> str:
    """Hash of a Python version (major.minor) and library versions."""
    return stable_digest({"python": ".".join(python.split(".")[:2]), **libraries}, 12)


@functools.lru_cache(maxsize=8)
def _this_environment() -> str:
    from harness.store.environment import library_versions

    return environment_digest(platform.python_version(), library_versions())


def environment_fingerprint(framework: Dict[str, Any]) -> str:
    """Hash of the library versions of the environment that trains the cell: this interpreter's, or the
    framework's own environment's (``framework.env``; "missing:<env>" until it is built)."""
    from harness.store.venvs import env_dir, env_versions

    if env_dir(framework) is None:
        return _this_environment()
    versions = env_versions(framework)
    if versions is None:
        return f"missing:{framework.get('env')}"
    own = environment_digest(versions.get("python") or "?", versions.get("libraries", {}))
    # a runner trains there but the worker tokenizes here: both environments shape the cell
    return f"{_this_environment()}+{own}" if framework.get("runner") else own


def cell_identity(config: Dict[str, Any]) -> Dict[str, Any]:
    """Everything that decides a cell's trained weights (see the module docstring)."""
    identity = {
        "version": IDENTITY_VERSION,
        "config": canonical_training_config(config),
        "data": data_fingerprint(config["data"]),
        "model": model_fingerprint(config["model"]),
        "device": device_class(config["run"]["device"]),
        "environment": environment_fingerprint(config["framework"]),
    }
    cap = config["run"].get("memory_cap_gib")
    if cap is not None:  # an emulated smaller device, like the device class: only an uncapped cell's id is unchanged
        identity["memory_cap_gib"] = float(cap)
    return identity


def framework_label(framework: Dict[str, Any]) -> str:
    """The framework's part of a cell id: ``framework.name``, unless that is still ``hf`` while another backend trains.

    ``framework.backend=pkg.module:FaultBackend`` alone leaves ``framework.name`` at its default, so its cells
    read ``-hf-`` although hf never trained them; those take the backend's own name (``fault``: the class, less a
    ``Backend`` suffix; a registry name as it is). An hf cell's label, hence every stored hf cell id, is unchanged.
    """
    name, backend = str(framework.get("name") or "hf"), str(framework.get("backend") or "hf")
    if name != "hf" or backend == "hf":
        return name
    module, _, attr = backend.rpartition(":") if ":" in backend else ("", "", backend)
    label = re.sub(r"(?i)_?backend$", "", attr) or module.rsplit(".", 1)[-1]
    return re.sub(r"[^A-Za-z0-9._+-]", "_", label.lower()) or "plugin"


def cell_id(config: Dict[str, Any], identity: Dict[str, Any]) -> str:
    """Readable prefix (model, method, rank, quantization, framework) and a hash of the identity."""
    model, peft, quant = config["model"]["name"], config["peft"]["method"], config["quant"]["mode"]
    rank = f"-r{config['lora']['r']}" if peft in ("lora", "dora") else ""
    dist = config.get("dist") or {}
    ranks = f"-{dist['strategy']}{dist.get('processes')}" if dist.get("strategy", "none") != "none" else ""
    return f"{model}-{peft}{rank}-{quant}-{framework_label(config['framework'])}{ranks}-{stable_digest(identity, 12)}"


def eval_keys(config: Dict[str, Any]) -> Dict[str, str]:
    """evaluator name -> key of its result for this config: name, block, baseline flag and declared inputs.

    A generation evaluator's key leaves out its judge-only settings and adds its input files'
    content (``harness.benchmarks.checks``): a new judge prompt re-judges the same answers.
    """
    from harness.benchmarks.checks import generation_block, input_digests

    block = config.get("eval") or {}
    keys = {}
    for name, settings in block.items():
        if name in ("baseline", "judge") or settings is None:
            continue
        inputs = {"name": name, "config": generation_block(name, settings), "baseline": block.get("baseline", True)}
        files = input_digests(name, settings)
        if files:
            inputs["files"] = files
        mmlu_dir = settings.get("mmlu_dir") if isinstance(settings, dict) else None
        if mmlu_dir:  # a local data folder is an input: edited questions must be scored again
            from harness.data.load import source_files

            inputs["mmlu_dir"] = _files_digest(_stamp(tuple(source_files(Path(mmlu_dir).expanduser()))))
        keys[name] = f"{name}-{stable_digest(inputs, 10)}"
    return keys

