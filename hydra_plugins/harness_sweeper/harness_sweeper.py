"""Hydra's basic sweeper, plus validation of every grid point before any cell starts.

A typo in one value of a sweep (``lora.r=0,8``) should fail the command at once, not
after the first cells have trained. Composing a config is cheap, so each job's config
is composed and validated up front; on error the command prints one line per problem
and exits with status 2, having computed nothing.

With ``run.oom_frontier=true`` (the default) the jobs are launched in ascending predicted
memory (``harness.sweep.frontier.order``), so a cell that runs out of memory does so before the
larger cells it rules out; the manifest numbers the jobs in that launch order.

``hydra.sweeper.cells`` (optional) lists heterogeneous cells instead of one Cartesian grid: each entry is one
cell's overrides in one string (split like a shell line, ``"model=mistral quant=4bit lora.r=16"``). The jobs are,
cell by cell in the listed order, the grid of that cell's overrides + ``hydra.sweeper.params`` + the command line's
arguments; where params or an argument sets a key (or config group) the cell sets too, the params/argument wins.
Without ``cells`` the jobs are BasicSweeper's grid, exactly.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import OverrideParseException

from harness.errors import ConfigError


@dataclass
class ValidatingSweeperConf:
    """Hydra config node for this sweeper (``hydra/sweeper=harness``)."""

    _target_: str = "hydra_plugins.harness_sweeper.harness_sweeper.ValidatingSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None
    cells: Optional[List[str]] = None
    """Heterogeneous cells: one string of overrides per cell (``"model=mistral peft=full quant=none"``); None (or an
    empty list) = one grid, BasicSweeper's."""


def parse_cells(parser: OverridesParser, cells: Optional[List[str]]) -> Optional[List[List[Override]]]:
    """Each cell string of ``hydra.sweeper.cells`` as Hydra's parsed overrides; None without cells.

    An empty or unparsable cell is a one-line ConfigError naming ``hydra.sweeper.cells[i]``.
    """
    if not cells:
        return None
    parsed: List[List[Override]] = []
    for index, text in enumerate(cells):
        where = f"hydra.sweeper.cells[{index}]"
        try:
            words = shlex.split(str(text))
        except ValueError as exc:  # an unclosed quote
            raise ConfigError(f"{where}={str(text)!r}: cannot split it into overrides ({exc}); "
                              "write one cell as 'key=value key=value'") from None
        if not words:
            raise ConfigError(f"{where}={str(text)!r}: an empty cell; write its overrides as 'key=value key=value'")
        try:
            parsed.append(parser.parse_overrides(words))
        except OverrideParseException as exc:
            lines = [line.strip() for line in str(exc.message).splitlines() if line.strip()
                     and not line.startswith(("See https://", "Error parsing override"))]
            reason = lines[0] if lines else "not key=value"
            raise ConfigError(f"{where}={str(text)!r}: cannot parse {exc.override} ({reason}); write key=value") from None
    return parsed


def expand(overrides: List[Override], cells: Optional[List[List[Override]]]) -> List[List[str]]:
    """Every job's overrides: BasicSweeper's grid of ``overrides`` (params + arguments); with cells, for each cell
    in order the grid of its overrides + ``overrides``, a cell's override of a key (or group) that ``overrides``
    set too dropped (compared on ``key_or_group``: the params/command-line value wins)."""
    if cells is None:
        return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]
    given = {override.key_or_group for override in overrides}
    jobs: List[List[str]] = []
    for cell in cells:
        kept = [override for override in cell if override.key_or_group not in given]
        jobs += [job for batch in BasicSweeper.split_arguments(kept + list(overrides), None) for job in batch]
    return jobs


def _unwritten(exc: OSError, fallback: str, job: Optional[int] = None) -> None:
    """One line for a write Hydra itself failed (a job's .hydra files, multirun.yaml); the exit code follows."""
    from harness.sweep.job import STATE, cannot_write

    STATE.unwritten += 1
    if job is not None:
        STATE.not_ok += 1
    where = f"#{job}: " if job is not None else ""
    print(f"error: {where}{cannot_write(exc, fallback)}" + ("; the cell did not run" if job is not None else ""),
          file=sys.stderr, flush=True)


class GuardedLauncher:
    """The sweep's launcher, with Hydra's own writes per job guarded: a job whose ``.hydra`` files cannot be
    written (a full disk) is one line and a cell not run, never a traceback that loses the later cells and the
    summary (Hydra's ``run_job`` writes them before our task starts, so the task cannot catch it).

    The basic launcher runs jobs one by one anyway, so each is launched alone; another launcher keeps its batch,
    and only when the batch fails are its jobs launched again one by one (cells stored ok are reused, not rerun).
    """

    def __init__(self, launcher: Any) -> None:
        self.launcher = launcher

    def __getattr__(self, name: str) -> Any:
        return getattr(self.launcher, name)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> List[Any]:
        """Hydra's ``Launcher.launch``: the returns of the jobs that ran."""
        if type(self.launcher).__name__ != "BasicLauncher" and len(job_overrides) > 1:
            try:
                return list(self.launcher.launch(job_overrides, initial_job_idx=initial_job_idx))
            except OSError as exc:
                _unwritten(exc, "a job's .hydra files")
        returns: List[Any] = []
        for offset, overrides in enumerate(job_overrides):
            num = initial_job_idx + offset
            try:
                returns += list(self.launcher.launch([overrides], initial_job_idx=num))
            except OSError as exc:
                _unwritten(exc, f"the .hydra files of job #{num}", job=num)
        return returns


class ValidatingSweeper(BasicSweeper):
    """BasicSweeper that refuses to launch a grid containing an invalid cell."""

    def __init__(self, max_batch_size: Optional[int], params: Optional[Dict[str, str]] = None,
                 cells: Optional[List[str]] = None) -> None:
        super().__init__(max_batch_size, params)
        self.cells = [str(cell) for cell in cells] if cells is not None else None

    def _parsed_cells(self) -> Optional[List[List[Override]]]:
        if self.cells is None:  # a plain grid: nothing to parse (and no Hydra context needed)
            return None
        context = getattr(self, "hydra_context", None)
        parser = OverridesParser.create(config_loader=context.config_loader if context else None)
        return parse_cells(parser, self.cells)

    def _job_overrides(self, arguments: List[str]) -> List[List[str]]:
        params = [f"{k}={v}" for k, v in (self.params or {}).items()] + list(arguments)
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        return expand(parser.parse_overrides(params), self._parsed_cells())

    def split_arguments(self, overrides: List[Any], max_batch_size: Optional[int]) -> List[List[List[str]]]:  # type: ignore[override]
        """The jobs of ``_job_overrides`` (``expand``), in the launch order ``_write_manifest`` chose
        (``self._order``), in batches."""
        jobs = expand(overrides, self._parsed_cells())
        order = getattr(self, "_order", None)
        if order is not None and sorted(order) == list(range(len(jobs))):
            jobs = [jobs[i] for i in order]
        return list(BasicSweeper.split_overrides_to_chunks(jobs, max_batch_size)) if max_batch_size else [jobs]

    def sweep(self, arguments: List[str]) -> Any:
        from harness.sweep.preflight import compose_job
        from harness.sweep.validate import validate

        problems: List[str] = []
        valid: List[Tuple[List[str], Any, Dict[str, Any]]] = []
        try:
            jobs = self._job_overrides(arguments)
        except ConfigError as exc:  # a cell of hydra.sweeper.cells that is empty or cannot be parsed
            jobs, problems = [], [str(exc)]
        for overrides in jobs:
            try:  # composing can fail too (quant=3bit, train.lrr=1): one line each, like validation
                job_cfg = compose_job(self.hydra_context.config_loader, self.config, overrides)
                typed, plain = validate(job_cfg)
                valid.append((list(overrides), typed, plain))
            except ConfigError as exc:
                if str(exc) not in problems:
                    problems.append(str(exc))
        if not problems:
            problems = self._write_manifest(valid)
        if problems:
            for problem in problems:
                print(f"error: {problem}", file=sys.stderr)
            sys.exit(2)
        # The sweep folder is derived from the sweep's overrides; a job composed with its
        # own overrides would derive another one, so pin every job to the sweep's folder.
        sweep_dir = str(self.config.hydra.sweep.dir).replace("\\", "\\\\").replace("'", "\\'")
        self.launcher = GuardedLauncher(self.launcher)
        from harness.sweep.orphans import export

        export()  # before the launcher starts its processes: they stop, with their cells, if this one dies
        try:
            return super().sweep(list(arguments) + [f"hydra.sweep.dir='{sweep_dir}'"])
        except OSError as exc:  # multirun.yaml on a full disk: one line, and the summary callback still runs
            _unwritten(exc, f"{self.config.hydra.sweep.dir}/multirun.yaml")
            return []

    def _write_manifest(self, jobs: List[Tuple[List[str], Any, Dict[str, Any]]]) -> List[str]:
        """Plan every cell of the grid and write the sweep's manifest; return problems (one line each).

        The manifest names exactly this command's cells, so the summary and the exit code
        cover this grid and nothing else in the folder. Two grid points that are the same
        cell (they differ only in run.* keys or in values equal to each other) are refused.
        """
        from harness.store.layout import write_manifest
        from harness.sweep.cell import plan_cell
        from harness.sweep.frontier import order
        from harness.sweep.job import check_sweep_dir, manifest_entry

        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        roots = {str(typed.run.root) for _, typed, _ in jobs}
        if len(roots) > 1:
            return [f"run.root={','.join(sorted(roots))}: run.root cannot be swept (one store per command)"]
        try:
            check_sweep_dir(sweep_dir, Path(roots.pop()))
        except ConfigError as exc:
            return [str(exc)]
        entries: Dict[str, Dict[str, Any]] = {}
        first: Dict[str, List[str]] = {}
        plans = []
        for overrides, typed, plain in jobs:
            plan = plan_cell(plain, Path(typed.run.root))
            if plan.cell_id in first:
                differ = sorted(set(overrides) ^ set(first[plan.cell_id])) or overrides
                return [f"{' '.join(differ)}: these grid points are one and the same cell {plan.cell_id} "
                        "(run.* keys and equal values do not change a cell); sweep keys that change the result"]
            first[plan.cell_id] = overrides
            plans.append(plan)
        frontier = all(typed.run.oom_frontier for _, typed, _ in jobs)
        self._order = order(plans) if frontier else list(range(len(jobs)))
        for num, index in enumerate(self._order):  # numbered as launched
            entries[str(num)] = manifest_entry(plans[index], jobs[index][0])
        try:
            sweep_dir.mkdir(parents=True, exist_ok=True)
            write_manifest(sweep_dir, entries)
        except OSError as exc:  # read-only or full run.root
            return [f"run.root: cannot write {exc.filename or sweep_dir}: {exc.strerror or exc}"]
        return []
