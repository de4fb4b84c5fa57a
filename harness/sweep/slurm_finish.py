"""``run.finish=slurm``: the sweep ends with a SLURM job, not a waiting parent.

Under ``hydra/launcher=submitit_slurm`` (or the ``slurm`` preset) the parent submits the cells' array as
submitit does, records each job's SLURM id as its outcome (``submitted``: a rerun leaves a job still in
``squeue`` alone, harness.sweep.reuse), then submits one more job, ``--dependency=afterany:<array id>``,
that runs ``python -m harness.sweep.finish SWEEP`` (judge pending, summary, report) once every cell has
ended however it ended; the parent prints both ids and exits without waiting.

Light: submitit is imported only when a SLURM sweep launches.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Sequence

from harness.errors import HarnessError


@contextmanager
def _no_wait(submitted: List[Any]) -> Iterator[None]:
    """While open, submitit's ``map_array`` submits as usual but hands back jobs whose results are not waited for."""
    import submitit

    real = submitit.AutoExecutor.map_array

    class Submitted:
        def __init__(self, job: Any) -> None:
            self.job = job

        def results(self) -> List[None]:  # what BaseSubmititLauncher.launch reads: nothing to wait for
            return [None]

    def submit(executor: Any, fn: Any, *iterable: Any) -> List[Any]:
        jobs = real(executor, fn, *iterable)
        submitted.extend(jobs)
        return [Submitted(job) for job in jobs]

    submitit.AutoExecutor.map_array = submit
    try:
        yield
    finally:
        submitit.AutoExecutor.map_array = real


def submit_array(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int,
                 numbers: Sequence[int], sweep_dir: Path) -> List[str]:
    """Submit one array through ``launcher`` (hydra-submitit's own launch) without waiting; record each job's SLURM id
    as its outcome; the jobs' ids (``<array>_<task>``)."""
    from harness.store.layout import record_outcome

    submitted: List[Any] = []
    with _no_wait(submitted):
        launcher.launch(job_overrides, initial_job_idx=initial_job_idx)
    ids = [str(job.job_id) for job in submitted]
    for num, job_id in zip(numbers, ids):
        try:
            record_outcome(sweep_dir, str(num), {"status": "submitted", "slurm_job_id": job_id})
        except OSError:  # only the rerun's squeue check loses it
            pass
    return ids


def finish_script(sweep_dir: Path, setup: Optional[Sequence[str]], python: str = sys.executable,
                  cwd: Optional[Path] = None) -> str:
    """The dependent job's shell lines: the launcher's ``setup`` lines, then the finish module."""
    lines = [*(setup or []), f"cd {shlex.quote(str(cwd or Path.cwd()))}",
             f"{shlex.quote(python)} -m harness.sweep.finish {shlex.quote(str(sweep_dir))}"]
    return " && ".join(lines)


def submit_finish(array_ids: Sequence[str], sweep_dir: Path, params: dict,
                  run: Callable[..., Any] = subprocess.run) -> str:
    """``sbatch --dependency=afterany:<arrays>`` of the finish job; its SLURM id. ``params``: the launcher's
    (partition, account, setup) so it lands where the cells did. A refusal is a one-line HarnessError."""
    arrays = sorted({job_id.split("_")[0] for job_id in array_ids})
    log = Path(sweep_dir) / ".submitit" / "finish-%j.out"
    cmd = ["sbatch", f"--dependency=afterany:{':'.join(arrays)}", "--job-name=harness-finish", f"--output={log}",
           "--ntasks=1", "--cpus-per-task=2", "--time=60"]
    cmd += [f"--{key}={params[key]}" for key in ("partition", "account") if params.get(key)]
    cmd += ["--wrap", finish_script(sweep_dir, params.get("setup"))]
    Path(log.parent).mkdir(parents=True, exist_ok=True)
    try:
        out = run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        raise HarnessError(f"run.finish=slurm: cannot submit the finish job ({exc}); run "
                           f"python -m harness.sweep.finish {sweep_dir} once the cells end") from None
    words = (out.stdout or "").split()
    if out.returncode != 0 or not words or not words[-1].split(";")[0].isdigit():
        raise HarnessError(f"run.finish=slurm: sbatch refused the finish job: {(out.stderr or out.stdout).strip()}; run "
                           f"python -m harness.sweep.finish {sweep_dir} once the cells end")
    return words[-1].split(";")[0]


def say_submitted(array_ids: Sequence[str], finish_id: str, sweep_dir: Path, line: Callable[[str], None] = print) -> None:
    """The parent's last lines: the two job ids and how to watch them."""
    arrays = ",".join(sorted({job_id.split("_")[0] for job_id in array_ids}))
    line(f"submitted {len(array_ids)} cell(s) as SLURM array {arrays} and the finish job {finish_id} "
         f"(afterany: summary, judge, report once every cell ended); this command does not wait.")
    line(f"watch: squeue -j {arrays},{finish_id}   progress: python -m harness.report {sweep_dir}   "
         f"log of the finish job: {Path(sweep_dir) / '.submitit' / f'finish-{finish_id}.out'}")
