"""The OOM frontier: a sweep runs its cells in ascending predicted memory, and a cell that needs at least as much
memory as one that already ran out is skipped as "does not fit (inferred)" instead of trained.

A cell B is skipped, naming the cell A, when in this run of the sweep:

- A ended ``oom``;
- A and B have the same identity -- model, data, method, every training key, device class,
  memory cap, library versions -- except ``train.batch_size``, ``train.max_seq_len`` and
  ``lora.r`` (``SHAPE_KEYS``), and each of B's values is >= A's;
- the capacity planner (``harness.plan.memory``) predicts B's peak >= A's;
- B has no stored ok record (a measured fit beats an inference).

``run.oom_frontier=false`` turns it off (grid order, nothing skipped). The order is decided
by the sweeper (``order``); the check runs in each job before its cell (``inferred_skip``)
against the outcomes the jobs of this run wrote into their own job files (``"ended"``; the oom ones
are indexed under ``<sweep>/jobs/oom/``, so a job reads only those, never the whole grid:
``harness.store.manifest``). A skip is written into the skipped job's own entry (``"frontier"``),
never into the cell store, and ``harness.store.layout.load_sweep`` shows it (``skipped_view``).
Every new run of the sweeper gets a fresh run token and ignores the job files of earlier runs, so
a rerun checks every skip again (a rerun with a bigger ``run.memory_cap_gib`` is a new set of
cells and runs them). Light: no torch.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from harness.files import read_json
from harness.store.launch import shared_gpu
from harness.store.manifest import ENDED, oom_jobs
from harness.store.records import RECORD_NAME

SHAPE_KEYS = (("train", "batch_size"), ("train", "max_seq_len"), ("lora", "r"))
"""The keys that may differ between a cell that ran out of memory and the cells it rules out."""
INFERRED = "does not fit (inferred from {cell})"
"""How a skipped cell's error starts (the report draws such cells as "does not fit (inferred)")."""


def _dotted(path: Tuple[str, str]) -> str:
    return ".".join(path)


def shape(config: Dict[str, Any]) -> Tuple[Any, ...]:
    """(train.batch_size, train.max_seq_len, lora.r) of a resolved config."""
    return tuple((config.get(block) or {}).get(key) for block, key in SHAPE_KEYS)


def predicted_mib(config: Dict[str, Any], device_class: str) -> Optional[float]:
    """The planner's uncalibrated peak for a resolved config on its device class (what the device must hold), MiB;
    None when the planner cannot model it. A model.hub_id that is a local folder is predicted with the shape of its
    config.json (``Cell.from_dict``), not the group's numbers, so the order and the skips follow the real model."""
    from harness.plan.memory import predict
    from harness.plan.setting import Cell

    device = "cuda" if str(device_class).startswith("cuda") else "cpu"
    try:
        return predict(Cell.from_dict(config), device).device_total_mib
    except Exception:  # noqa: BLE001 - an unmodelled cell keeps its grid place and is never ruled out
        return None


def order(plans: Sequence[Any]) -> List[int]:
    """Indices of ``plans`` (``harness.sweep.cell.CellPlan``) in ascending predicted memory; cells the planner cannot
    model keep their grid order after the others (a stable sort: equal predictions keep the grid's order)."""
    keys = [predicted_mib(plan.config, plan.identity.get("device", "cpu")) for plan in plans]
    return sorted(range(len(plans)), key=lambda i: (keys[i] is None, keys[i] or 0.0, i))


def _rest(identity: Dict[str, Any]) -> Dict[str, Any]:
    """A cell identity without the shape keys: what must be equal for one cell to rule out another."""
    rest = copy.deepcopy(identity)
    for block, key in SHAPE_KEYS:
        (rest.get("config", {}).get(block) or {}).pop(key, None)
        if block in rest.get("config", {}) and not rest["config"][block]:
            del rest["config"][block]
    return rest


def dominates(small: Dict[str, Any], large: Dict[str, Any]) -> Optional[str]:
    """Why ``large`` cannot fit where ``small`` ran out of memory, or None when it does not follow.

    Each is ``{"config": resolved config, "identity": cell identity}``. It follows when the
    identities agree except in ``SHAPE_KEYS``, each of ``large``'s values is >= ``small``'s,
    and the planner predicts ``large`` >= ``small`` (both predicted).
    """
    if _rest(small["identity"]) != _rest(large["identity"]):
        return None
    a, b = shape(small["config"]), shape(large["config"])
    if any(x is None or y is None or y < x for x, y in zip(a, b)):
        return None
    device = small["identity"].get("device", "cpu")
    pa, pb = predicted_mib(small["config"], device), predicted_mib(large["config"], device)
    if pa is None or pb is None or pb < pa:
        return None
    larger = [f"{_dotted(k)} {x}->{y}" for k, x, y in zip(SHAPE_KEYS, a, b) if y != x]
    return f"differs only in {', '.join(larger) or 'nothing'}, and the planner predicts {pb:.0f} >= {pa:.0f} MiB"


def _stored(cell_dir: Path) -> Optional[Dict[str, Any]]:
    return read_json(Path(cell_dir) / RECORD_NAME)


def _ended_oom(manifest: Any) -> List[Tuple[str, str]]:
    """(num, cell id) of this run's jobs that ended oom, in job order: from a sweep folder's oom index
    (``harness.store.manifest.oom_jobs``, what a job reads) or from a merged manifest (``read_manifest``)."""
    if isinstance(manifest, (str, Path)):
        found = oom_jobs(Path(manifest))
    else:
        found = {num: job.get("cell_id") for num, job in ((manifest or {}).get("jobs") or {}).items()
                 if job.get(ENDED) == "oom"}
    return sorted(((num, cid) for num, cid in found.items() if isinstance(cid, str)), key=lambda item: int(item[0]))


def inferred_skip(manifest: Any, num: str, plan: Any) -> Optional[Dict[str, Any]]:
    """The frontier mark for job ``num`` (cell ``plan``) when a cell of this run that it dominates ended oom; else None.

    ``manifest``: the sweep folder (a job reads only the oom index of this run: O(ooms), not O(grid)), or the
    merged manifest (``read_manifest``; each ended job carries ``"ended"``). A cell stored ok is never skipped:
    it was measured to fit (with ``run.force`` it trains again). The mark names the cell that ran out and why.
    """
    stored = _stored(plan.cell_dir)
    if stored is not None and stored.get("status") == "ok":
        return None
    large = {"config": plan.config, "identity": plan.identity}
    for other, cell_id in _ended_oom(manifest):
        if other == str(num) or cell_id == plan.cell_id:
            continue
        record = _stored(Path(plan.cell_dir).parent / cell_id)
        if not record or record.get("status") != "oom" or not record.get("identity"):
            continue
        if shared_gpu(record):  # it shared its GPU: its out-of-memory says nothing about one cell alone
            continue
        why = dominates({"config": record.get("config") or {}, "identity": record["identity"]}, large)
        if why is None:
            continue
        reason = (record.get("oom") or {}).get("reason")
        cause = f" ({reason})" if reason else ""
        error = (f"{INFERRED.format(cell=cell_id)}: that cell ran out of memory{cause} on the same device "
                 f"and memory cap; this one {why}")
        return {"inferred_from": cell_id, "error": error, "config": plan.config}
    return None
