"""Reject a bad command line in one line, before Hydra starts a job.

Hydra reports what it cannot compose (an unknown group option, an unknown key, a value
of the wrong type, an override it cannot parse) as 7-20 lines of its own text and exit
status 1, from inside ``hydra.main``. So the entry point composes the command's config
first, with Hydra's own loader and the same search path, and turns each of those errors
into ``error: <key>=<value>: <reason>`` with exit status 2 — the same shape as the
schema's own checks. A single run is also validated here, and ``run.root`` checked,
because Hydra creates the run folder before the task function could object. Grid points
of a multirun are composed and validated by the sweeper, through ``compose_job``.

Parent-only and light: Hydra and OmegaConf, never torch.
"""

from __future__ import annotations

import difflib
import os
import re
import typing
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from harness.errors import ConfigError
from harness.names import check_run_root_name
from harness.schema_keys import schema_at, schema_fields, unknown_key_message

# What composing a config can raise. AssertionError and ValueError included: setting a key
# inside a block that is null (eval.lm_eval when lm_eval is off) fails with a bare assert.
COMPOSITION_ERRORS = (HydraException, OmegaConfBaseException, AssertionError, ValueError)
APPEND_EXISTING = re.compile(r"Could not append to config\. An item is already at '([^']+)'")
TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


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
        from harness.main import validate

        validate(cfg)  # a multirun's grid points are validated by the sweeper, before any job starts
    try:
        root = OmegaConf.select(cfg, "run.root")
    except OmegaConfBaseException as exc:  # an interpolation that does not resolve
        raise ConfigError(f"run.root: {_first_line(exc)}") from None
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
    return {key: value for key, (value, _) in _overrides_by_key(overrides).items()}


def _overrides_by_key(overrides: List[str]) -> Dict[str, tuple]:
    """key -> (value text, the override as typed)."""
    found: Dict[str, tuple] = {}
    for line in overrides:
        key, sep, value = str(line).partition("=")
        found[key.lstrip("+~").split("@", 1)[0]] = (value if sep else "", str(line))
    return found


def composition_problem(exc: BaseException, overrides: List[str], loader: Any = None, config_name: Optional[str] = None) -> str:
    """One line for an error Hydra or OmegaConf raised while composing, naming the key and value.

    ``loader`` (Hydra's config loader) lists a group's options when the error does not;
    ``config_name`` tells an unknown primary config (``-cn``) from a broken defaults list.
    """
    typed = _overrides_by_key(overrides)
    values = {key: value for key, (value, _) in typed.items()}
    if isinstance(exc, OverrideParseException):
        return f"{exc.override}: cannot parse this override; write key=value"
    if isinstance(exc, MissingConfigException):
        return _missing_config(exc, values, loader, config_name)
    cause = exc.__cause__ if isinstance(exc.__cause__, OmegaConfBaseException) else exc
    if isinstance(cause, OmegaConfBaseException) and cause.full_key:
        key = str(cause.full_key)
        value = values.get(key, cause.value if cause.value is not None else "")
        if isinstance(cause, (ConfigAttributeError, ConfigKeyError)):
            return unknown_key_message(key, value)
        if isinstance(cause, ValidationError):
            return f"{key}={value}: must be {_expected(key) or 'a ' + _first_line(cause.msg)}"
        return f"{typed.get(key, (None, key))[1]}: {_first_line(cause.msg or str(cause))}"
    appended = APPEND_EXISTING.match(_first_line(str(exc)))
    if appended:  # Hydra's own check, with no OmegaConf cause to read the key from
        key = appended.group(1)
        return f"{typed.get(key, (None, '+' + key))[1]}: {key} already exists; set it without the + ({key}={values.get(key, '...')})"
    null_parent = _override_under_null_block(values)
    if null_parent is not None:
        return null_parent
    shown = " ".join(overrides) or "(no overrides)"
    return f"{shown}: cannot compose the config ({_first_line(str(exc)) or type(exc).__name__})"


def _first_line(text: Any) -> str:
    lines = [line.strip() for line in str(text or "").splitlines() if line.strip()]
    return lines[0] if lines else ""


def _missing_config(exc: MissingConfigException, values: Dict[str, str], loader: Any, config_name: Optional[str]) -> str:
    """An unknown option of a config group (``quant=3bit``), or an unknown primary config (``-cn``)."""
    missing = str(exc.missing_cfg_file or "")
    group, _, option = missing.rpartition("/")
    if not group and config_name is not None and option != config_name:  # a config's defaults list is broken
        return f"{config_name}: its defaults list names {missing}, which does not exist ({_first_line(exc)})"
    options = sorted(exc.options or (_group_options(loader, group) if loader is not None else []))
    close = difflib.get_close_matches(option, options, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    if not group:  # the primary config: list the files, not the schemas in Hydra's ConfigStore
        options = [name for name in options if not name.startswith("_") and not name.endswith("_schema")]
        close = difflib.get_close_matches(option, options, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        choices = f"; known: {', '.join(options)}" if options else ""
        return f"--config-name={option}: no such config{hint}{choices}"
    key = group.replace("/", ".")
    shown = values.get(group, values.get(key, option))
    named = "" if shown == option else f" {option}"
    choices = f"; choose one of {', '.join(options)}" if options else ""
    return f"{key}={shown}: unknown option{named}{choices}{hint}"


def _group_options(loader: Any, group: str) -> List[str]:
    try:
        return list(loader.get_group_options(group))
    except COMPOSITION_ERRORS:
        return []


def _expected(key: str) -> Optional[str]:
    """What a key's value must be, in words, from the schema (None when the key is not in it)."""
    parent, _, name = key.rpartition(".")
    schema = schema_at(parent)
    if schema is None or name not in schema_fields(schema):
        return None
    annotation = schema_fields(schema)[name]
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    nullable = typing.get_origin(annotation) is typing.Union and len(args) == 1
    inner = args[0] if nullable else annotation
    if typing.get_origin(inner) in (list, List):
        words = "a list ([a,b])"
    elif typing.get_origin(inner) in (dict, Dict):
        words = "a mapping ({k:v})"
    else:
        words = TYPE_WORDS.get(inner)
    if words is None:
        return None
    return f"{words} or null" if nullable else words


def _override_under_null_block(values: Dict[str, str]) -> Optional[str]:
    """The message for a key set inside a block that is null here (``eval.lm_eval.*`` with lm_eval off)."""
    for key, value in values.items():
        parts = key.split(".")
        for depth in range(1, len(parts)):
            block = ".".join(parts[:depth])
            parent, _, name = block.rpartition(".")
            schema = schema_at(parent)
            if schema is None or name not in schema_fields(schema):
                break
            annotation = schema_fields(schema)[name]
            if type(None) in typing.get_args(annotation):
                return (
                    f"{key}={value}: {block} is off (null) in this config, so it has no keys to set; "
                    f"turn it on first (eval=[...] picks the evaluators)"
                )
    return None
