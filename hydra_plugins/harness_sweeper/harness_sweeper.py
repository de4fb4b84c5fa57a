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

Only missing work is launched (``harness.sweep.reuse``): a job whose cell is stored ok is reused without a job
(one line), a job whose cell another process holds is left to it (one line naming the holder); the rest go to
the launcher under their manifest numbers (``NUM_KEY``), in batches of ``run.cells_at_once`` for submitit's local
executor, which starts every job it is given at once. The summary still covers the whole grid.
"""

from __future__ import annotations

import os
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


def numbered(overrides: Sequence[str], num: int) -> List[str]:
    """A job's overrides plus its manifest number (``hydra.job.env_set.HARNESS_JOB``: Hydra numbers jobs in launch
    order, and reused jobs are never launched; ``harness.sweep.job`` reads it back) and the matching ``.hydra`` folder
    (conf/config.yaml's subdir)."""
    from harness.sweep.job import NUM_KEY

    return [*overrides, f"++hydra.job.env_set.{NUM_KEY}={num}", f"hydra.sweep.subdir=.hydra-jobs/{num}"]


def number_of(overrides: Sequence[str]) -> Optional[int]:
    """The manifest number ``numbered`` put into a job's overrides, or None."""
    from harness.sweep.job import NUM_KEY

    prefix = f"++hydra.job.env_set.{NUM_KEY}="
    found = [o[len(prefix):] for o in overrides if o.startswith(prefix)]
    return int(found[-1]) if found and found[-1].isdigit() else None


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

    def __init__(self, launcher: Any, defer_to: Optional[Path] = None) -> None:
        self.launcher = launcher
        self.defer_to = defer_to if type(launcher).__name__ == "SlurmLauncher" else None
        """run.finish=slurm under SLURM: the sweep folder whose arrays are submitted without waiting."""
        self.submitted: List[str] = []
        """SLURM ids of the jobs submitted without waiting (harness.sweep.slurm_finish)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self.launcher, name)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> List[Any]:
        """Hydra's ``Launcher.launch``: the returns of the jobs that ran (none when submitted without waiting)."""
        if self.defer_to is not None:  # run.finish=slurm: submit, record the ids, never wait
            from harness.sweep.slurm_finish import submit_array

            nums = [number_of(o) for o in job_overrides]
            nums = [initial_job_idx + i if n is None else n for i, n in enumerate(nums)]
            self.submitted += submit_array(self.launcher, job_overrides, initial_job_idx, nums, self.defer_to)
            return []
        if type(self.launcher).__name__ != "BasicLauncher" and len(job_overrides) > 1:
            try:
                return list(self.launcher.launch(job_overrides, initial_job_idx=initial_job_idx))
            except OSError as exc:
                _unwritten(exc, "a job's .hydra files")
        returns: List[Any] = []
        for offset, overrides in enumerate(job_overrides):
            num = number_of(overrides)
            num = initial_job_idx + offset if num is None else num
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
        from harness.sweep.preflight import compose_jobs

        problems: List[str] = []
        valid: List[Tuple[List[str], Any, Dict[str, Any]]] = []
        try:
            jobs = self._job_overrides(arguments)
        except ConfigError as exc:  # a cell of hydra.sweeper.cells that is empty or cannot be parsed
            jobs, problems = [], [str(exc)]
        if jobs:  # composed once per combination of group overrides, the plain keys applied by field (preflight)
            valid, found = compose_jobs(self.hydra_context.config_loader, self.config, jobs)
            problems += [problem for problem in found if problem not in problems]
        if not problems:
            problems = self._finish_problem(valid) or self._write_manifest(valid)
        if problems:
            for problem in problems:
                print(f"error: {problem}", file=sys.stderr)
            sys.exit(2)
        from harness.sweep import reuse

        sorted_jobs = reuse.triage(self._entries, self._cell_dirs, self._forces, self._outcomes)
        reuse.say(sorted_jobs, self._entries, lambda line: print(line, flush=True))
        # The sweep folder is derived from the sweep's overrides; a job composed with its
        # own overrides would derive another one, so pin every job to the sweep's folder.
        sweep_dir = str(self.config.hydra.sweep.dir).replace("\\", "\\\\").replace("'", "\\'")
        deferred = Path(str(self.config.hydra.sweep.dir)) if self._run.get("finish") == "slurm" else None
        self.launcher = GuardedLauncher(self.launcher, deferred)
        from harness.sweep.orphans import export

        export()  # before the launcher starts its processes: they stop, with their cells, if this one dies
        try:
            returns = self._launch(list(arguments) + [f"hydra.sweep.dir='{sweep_dir}'"], sorted_jobs.launch)
        except OSError as exc:  # multirun.yaml on a full disk: one line, and the summary callback still runs
            _unwritten(exc, f"{self.config.hydra.sweep.dir}/multirun.yaml")
            return []
        if self.launcher.submitted:
            self._submit_finish()
        elif sorted_jobs.busy and self._run.get("on_busy", "wait") == "wait":  # their holders' results, in the summary
            reuse.wait_for(sorted_jobs, self._entries, self._cell_dirs, self._outcomes, lambda line: print(line, flush=True))
        return returns

    def _finish_problem(self, jobs: List[Tuple[List[str], Any, Dict[str, Any]]]) -> List[str]:
        """run.finish=slurm under a launcher that is not SLURM's: one line, before anything is written."""
        from harness.sweep.launch import launcher_name

        name = launcher_name(str(self.config.hydra.launcher.get("_target_") or ""))
        if name != "submitit_slurm" and any(typed.run.finish == "slurm" for _, typed, _ in jobs):
            return [f"run.finish=slurm: only with hydra/launcher=slurm or submitit_slurm (this sweep's launcher is {name}); "
                    "run.finish=parent ends the sweep in this command"]
        return []

    def _submit_finish(self) -> None:
        """run.finish=slurm: the finish job after the arrays (afterany); the parent's callback then leaves it to it."""
        from harness.errors import HarnessError
        from harness.sweep.job import STATE
        from harness.sweep.slurm_finish import say_submitted, submit_finish

        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        params = getattr(self.launcher.launcher, "params", {}) or {}
        try:
            finish_id = submit_finish(self.launcher.submitted, sweep_dir, params)
        except HarnessError as exc:  # the cells are submitted: say how to finish by hand, exit 1
            print(f"error: {exc}", file=sys.stderr, flush=True)
            STATE.unwritten += 1
            STATE.deferred = "none"
            return
        STATE.deferred = finish_id
        say_submitted(self.launcher.submitted, finish_id, sweep_dir, lambda line: print(line, flush=True))

    def _batch_size(self, launched: int) -> Optional[int]:
        """Jobs per launch call: the cap for submitit's local executor (it starts all it is given at once), else
        ``max_batch_size`` (None: all at once). Sets the cap and the launched count for the jobs (harness.sweep.launch)."""
        from harness.sweep.launch import CAP_ENV, LAUNCHED_ENV, cores, launcher_name, launcher_of, machine_cap

        cap = machine_cap(self._run, cores())
        os.environ[CAP_ENV], os.environ[LAUNCHED_ENV] = str(cap), str(launched)  # inherited by every launcher's jobs
        name = launcher_name(str(self.config.hydra.launcher.get("_target_") or ""))
        params = getattr(getattr(self.launcher, "launcher", None), "joblib", None)
        if name == "joblib" and isinstance(params, dict):  # Parallel(n_jobs) is read at launch: never above the cap
            params["n_jobs"] = launcher_of({**params, "_target_": "JoblibLauncher"}, launched, cores(), cap=cap).at_once
        if name == "submitit_local":
            return min(cap, self.max_batch_size) if self.max_batch_size else cap
        return self.max_batch_size

    def _launch(self, arguments: List[str], nums: List[int]) -> List[Any]:
        """BasicSweeper's loop over only the jobs ``nums`` (manifest numbers, in launch order), each told its number."""
        from omegaconf import OmegaConf

        params = [f"{k}={v}" for k, v in (self.params or {}).items()] + list(arguments)
        context = getattr(self, "hydra_context", None)
        parser = OverridesParser.create(config_loader=context.config_loader if context else None)
        (jobs,) = self.split_arguments(parser.parse_overrides(params), None)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        size = self._batch_size(len(nums)) or max(1, len(nums))
        returns: List[Any] = []
        for start in range(0, len(nums), size):
            batch = nums[start:start + size]
            # every job was composed and validated above: BasicSweeper's second composition per job is skipped
            results = self.launcher.launch([numbered(jobs[num], num) for num in batch], initial_job_idx=batch[0])
            for result in results:
                _ = result.return_value  # a job that raised: Hydra's own error, as BasicSweeper does
            returns.append(results)
        return returns

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
        # what the sweeper's triage reads (harness.sweep.reuse): per manifest number, before the old manifest goes
        self._entries = [entries[str(num)] for num in range(len(self._order))]
        self._cell_dirs = [plans[index].cell_dir for index in self._order]
        self._forces = [bool(jobs[index][1].run.force) for index in self._order]
        self._run = _run_block(jobs[0][2]) if jobs else {}
        self._outcomes = _old_outcomes(sweep_dir, self._entries)
        try:
            sweep_dir.mkdir(parents=True, exist_ok=True)
            write_manifest(sweep_dir, entries)
        except OSError as exc:  # read-only or full run.root
            return [f"run.root: cannot write {exc.filename or sweep_dir}: {exc.strerror or exc}"]
        return []


def _run_block(plain: Dict[str, Any]) -> Dict[str, Any]:
    """The run block of a job's validated config (cells_at_once, cells_per_gpu: one per machine, from the first job)."""
    return dict(plain.get("run") or {}) if isinstance(plain, dict) else {}


def _old_outcomes(sweep_dir: Path, entries: List[Dict[str, Any]]) -> Dict[int, Dict[str, Any]]:
    """job number -> the outcome an earlier run of this folder recorded for the same cell (a SLURM job may still
    hold it); {} without an earlier manifest or when it cannot be read."""
    from harness.store.layout import read_manifest

    try:
        old = (read_manifest(sweep_dir) or {}).get("jobs") or {}
    except Exception:  # noqa: BLE001 - a corrupt old manifest is rewritten below; nothing is known to run
        return {}
    by_cell = {job.get("cell_id"): job.get("outcome") for job in old.values() if isinstance(job.get("outcome"), dict)}
    return {num: by_cell[entry["cell_id"]] for num, entry in enumerate(entries) if entry["cell_id"] in by_cell}
