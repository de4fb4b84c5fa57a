"""Reject a bad command line in one line, before Hydra starts a job.

Hydra reports what it cannot compose (an unknown group option, an unknown key, a value
of the wrong type, an override it cannot parse) as 7-20 lines of its own text and exit
status 1, from inside ``hydra.main``. So the entry point composes the command's config
first, with Hydra's own loader and the same search path, and turns each of those errors
into ``error: <key>=<value>: <reason>`` with exit status 2 — the same shape as the
schema's own checks. A single run is also validated here, and ``run.root`` checked,
because Hydra creates the run folder before the task function could object. Grid points
of a multirun are composed and validated by the sweeper, through ``compose_jobs`` (once per
combination of config groups; the other overrides applied as Hydra applies them).

Parent-only and light: Hydra and OmegaConf, never torch.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from hydra.errors import OverrideParseException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from harness.config.composition import COMPOSITION_ERRORS, composition_problem, first_line, overrides_by_key
from harness.config.names import check_run_root_name
from harness.errors import ConfigError


def check_command_line(argv: List[str], conf_dir: str) -> None:
    """Compose (and for a single run, validate) what ``python -m harness ARGV`` would run; one-line ConfigError.

    Leaves Hydra's own flags alone: --help and --hydra-help are not checked, --cfg and
    --info only composed (nothing is created for them).
    """
    from hydra._internal.utils import get_args_parser
    from hydra.types import RunMode

    args = get_args_parser().parse_args(argv)
    if args.help or args.hydra_help or args.shell_completion or args.config_path is not None:
        return  # -cp moves the primary config relative to the code; Hydra reports that itself
    loader = config_loader(conf_dir, args.config_dir)
    overrides = list(args.overrides)
    parsed = parse_overrides(loader, overrides)
    for override in parsed:
        if override.get_key_element().lstrip("+~") == "hardware":  # conf/hardware was once in the search path
            raise ConfigError(
                f"{override.input_line}: hardware is not a config group: a cell runs on the device it finds "
                "(run.device); the hardware catalogue (hardware/*.yaml) is the planner's: python -m harness.plan --gpu NAME"
            )
    # -m, or a config that sets hydra.mode: MULTIRUN (every named sweep in sweeps/ does) — as Hydra decides it
    multirun = bool(args.multirun) or configured_mode(loader, args.config_name or "config", overrides) == RunMode.MULTIRUN
    if not multirun:
        for override in parsed:
            if override.is_sweep_override():
                key = override.get_key_element()
                raise ConfigError(
                    f"{override.input_line}: several values are a sweep and need -m (--multirun); "
                    f"a list is written {key}=[...]"
                )
    mode = RunMode.MULTIRUN if multirun else RunMode.RUN
    cfg = compose(loader, args.config_name or "config", overrides, mode)
    if args.cfg or args.info:
        return
    single = mode == RunMode.RUN and OmegaConf.select(cfg, "hydra.mode") != RunMode.MULTIRUN
    if single:
        from harness.sweep.validate import validate

        validate(cfg)  # a multirun's grid points are validated by the sweeper, before any job starts
    try:
        root = OmegaConf.select(cfg, "run.root")
    except OmegaConfBaseException as exc:  # an interpolation that does not resolve
        raise ConfigError(f"run.root: {first_line(exc)}") from None
    check_run_root(root, create=single)  # after validation: a rejected command creates nothing


def config_loader(conf_dir: str, extra_dir: Optional[str]) -> Any:
    """Hydra's config loader over the search path ``hydra.main`` builds (sweeps/ included by its plugin)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path
    from hydra.core.config_search_path import SearchPathQuery

    search_path = create_config_search_path(conf_dir)
    if extra_dir is not None:
        folder = os.path.abspath(extra_dir)
        if not os.path.isdir(folder):
            raise ConfigError(f"--config-dir={extra_dir}: no such folder")
        search_path.prepend(provider="command-line", path=f"file://{folder}", anchor=SearchPathQuery(provider="schema"))
    return ConfigLoaderImpl(config_search_path=search_path)


def parse_overrides(loader: Any, overrides: List[str]) -> List[Any]:
    """Hydra's parsed overrides; a line Hydra's grammar rejects is a one-line ConfigError."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create(config_loader=loader).parse_overrides(overrides)
    except OverrideParseException as exc:
        lines = [line.strip() for line in str(exc.message).splitlines() if line.strip()]
        reason = lines[1] if len(lines) > 1 else "not key=value"
        raise ConfigError(f"{exc.override}: cannot parse this override ({reason}); write key=value") from None


def compose(loader: Any, config_name: str, overrides: List[str], mode: Any) -> DictConfig:
    """The config Hydra would compose; its errors as one-line ConfigErrors."""
    try:
        return loader.load_configuration(config_name=config_name, overrides=list(overrides), run_mode=mode, from_shell=True)
    except COMPOSITION_ERRORS as exc:
        raise ConfigError(composition_problem(exc, overrides, loader, config_name)) from None


def configured_mode(loader: Any, config_name: str, overrides: List[str]) -> Any:
    """``hydra.mode`` of the composed config, as Hydra's own ``get_mode`` reads it (None when it cannot compose)."""
    from hydra.types import RunMode

    try:
        cfg = loader.load_configuration(
            config_name=config_name, overrides=list(overrides), run_mode=RunMode.MULTIRUN,
            from_shell=True, validate_sweep_overrides=False,
        )
        return OmegaConf.select(cfg, "hydra.mode")
    except COMPOSITION_ERRORS:
        return None  # compose() below reports why, in one line


def compose_job(loader: Any, master: DictConfig, overrides: List[str]) -> DictConfig:
    """One grid point of a multirun, composed as the sweeper does; errors as one-line ConfigErrors."""
    try:
        return loader.load_sweep_config(master, list(overrides))
    except COMPOSITION_ERRORS as exc:
        name = OmegaConf.select(master, "hydra.job.config_name")
        raise ConfigError(composition_problem(exc, overrides, loader, name)) from None


def compose_jobs(loader: Any, master: DictConfig, jobs: Sequence[Sequence[str]]) -> Tuple[List[Tuple[List[str], Any, Dict[str, Any]]], List[str]]:
    """Every grid point composed and validated as ``compose_job`` + ``validate`` would, in a fraction of the time:
    (valid: (overrides, typed, plain) in grid order, problems: one line each, each once).

    Hydra composes a point in ~0.1 s, nearly all of it building the defaults list from the config groups. So the
    config is composed once per distinct combination of group overrides (``model=``, ``quant=``, ``eval=``, with
    the command's own ``hydra.*``), and each point's other overrides are applied to a copy of it with Hydra's own
    ``_apply_overrides_to_config``, in the order and with the checks a full compose applies them -- the same config,
    the same errors (tests/unit/test_compose_jobs.py). A point with any other kind of override (``+``/``++``/``~``,
    a package ``@``, a sweep) is composed in full (``compose_job``); ``hydra.`` keys go into the composed part.
    """
    from harness.sweep.validate import validate

    valid: List[Tuple[List[str], Any, Dict[str, Any]]] = []
    problems: List[str] = []
    bases: Dict[Tuple[str, ...], Any] = {}
    parsed: Dict[str, Any] = {}  # override line -> Hydra's parsed override: a grid repeats each line many times
    prefix = [str(line) for line in (OmegaConf.select(master, "hydra.overrides.hydra") or [])]
    for overrides in jobs:
        try:  # composing can fail too (quant=3bit, train.lrr=1): one line each, like validation
            cfg = _fast_compose(loader, master, list(overrides), prefix, bases, parsed)
            typed, plain = validate(cfg)
            valid.append((list(overrides), typed, plain))
        except ConfigError as exc:
            if str(exc) not in problems:
                problems.append(str(exc))
    return valid, problems


def _parsed(loader: Any, lines: List[str], cache: Dict[str, Any]) -> List[Any]:
    """Hydra's parsed overrides of ``lines``, each line parsed once (an unparsable one: ``parse_overrides``' message)."""
    missing = [line for line in dict.fromkeys(lines) if line not in cache]
    if missing:
        cache.update(zip(missing, parse_overrides(loader, missing)))
    return [cache[line] for line in lines]


def _fast_compose(loader: Any, master: DictConfig, overrides: List[str], prefix: List[str],
                  bases: Dict[Tuple[str, ...], Any], cache: Dict[str, Any]) -> DictConfig:
    """One point's config without Hydra's node: its group combination's composed config (``bases``, composed on first
    use, kept pickled: unpickling is ~3x faster than a deep copy) with its other overrides applied; ``compose_job``
    when an override needs the defaults list."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    group, plain = [], []
    for override in _parsed(loader, prefix + overrides, cache):
        is_group = loader.repository.group_exists(override.key_or_group) and not isinstance(override.value(), dict)
        if is_group or override.is_hydra_override():
            group.append(override.input_line)
        elif override.package is not None or override.is_sweep_override() \
                or override.is_add() or override.is_force_add() or override.is_delete():
            return compose_job(loader, master, overrides)  # Hydra's own message and behaviour, in full
        else:
            plain.append(override)
    key = tuple(group)
    if key not in bases:
        try:
            bases[key] = _base(loader, master, [line for line in group if line not in prefix])
        except ConfigError as exc:
            bases[key] = exc
    base = bases[key]
    if isinstance(base, ConfigError):
        if not plain:
            raise base
        return compose_job(loader, master, overrides)  # the message names this point's own overrides
    cfg = pickle.loads(base)
    try:
        ConfigLoaderImpl._apply_overrides_to_config(plain, cfg)
    except COMPOSITION_ERRORS as exc:
        name = OmegaConf.select(master, "hydra.job.config_name")
        raise ConfigError(composition_problem(exc, overrides, loader, name)) from None
    return cfg


def _base(loader: Any, master: DictConfig, group: List[str]) -> bytes:
    """A group combination composed in full (``compose_job``), without Hydra's node (``validate`` drops it anyway)."""
    cfg = compose_job(loader, master, group)
    with open_dict(cfg):
        del cfg["hydra"]
    return pickle.dumps(cfg)


def check_run_root(root: Any, create: bool = True) -> None:
    """``run.root`` is a folder this process can write, never a system folder.

    ``create``: make it when missing (the exact test: a read-only mount or a file in the
    way fails here). Without, the nearest existing folder above it must be writable —
    for a multirun, whose grid the sweeper has yet to validate: a rejected sweep leaves nothing behind.
    """
    check_run_root_name(root)
    path = Path(os.path.expanduser(str(root))).absolute()
    if not create and not path.exists():
        above = next(parent for parent in path.parents if parent.exists())
        if not above.is_dir() or not os.access(above, os.W_OK | os.X_OK):
            raise ConfigError(f"run.root={root}: cannot create the folder ({above} is not a writable folder)")
        return
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"run.root={root}: exists and is not a folder") from None
    except OSError as exc:
        raise ConfigError(f"run.root={root}: cannot create the folder ({exc.strerror or type(exc).__name__})") from None
    if not path.is_dir():
        raise ConfigError(f"run.root={root}: exists and is not a folder")
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"run.root={root}: the folder is not writable by this user")


def override_values(overrides: List[str]) -> Dict[str, str]:
    """key -> value text of ``key=value`` overrides (``+``/``++``/``~`` and ``@package`` dropped; last wins)."""
    return {key: value for key, (value, _) in overrides_by_key(overrides).items()}
