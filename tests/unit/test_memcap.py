"""run.memory_cap_gib: validation, identity, the CPU watchdog, the CUDA memory fraction, and how a capped cell ends."""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path

import pytest

from harness.config.run import RunConfig
from harness.config.schema import HarnessConfig
from harness.errors import ConfigError
from harness.files import read_json
from harness.measure import memcap
from harness.measure.memcap import (
    GIB,
    MIB,
    CapBelowContext,
    Watchdog,
    apply_cuda_cap,
    cuda_fraction,
    tree_rss,
    watchdog_for,
)
from harness.store import identity
from harness.store.identity import cell_id, cell_identity
from harness.store.records import RECORD_NAME
from harness.sweep.cell import CellPlan, _collect
from harness.worker.outcome import classify, one_line

pytestmark = pytest.mark.unit


# ---- the key ----------------------------------------------------------------------------------


def test_the_cap_defaults_to_none_and_accepts_a_positive_number():
    assert RunConfig().memory_cap_gib is None and RunConfig().oom_frontier is True
    assert RunConfig(memory_cap_gib=24).memory_cap_gib == 24
    assert RunConfig(memory_cap_gib=0.3).memory_cap_gib == 0.3


@pytest.mark.parametrize("value", [0, 0.0, -1.0, math.nan, math.inf, True])
def test_a_cap_that_is_not_a_positive_number_is_one_line_naming_the_key(value):
    with pytest.raises(ConfigError) as info:
        RunConfig(memory_cap_gib=value)
    assert str(info.value).startswith("run.memory_cap_gib=") and "\n" not in str(info.value)
    assert "positive number of GiB" in str(info.value)


@pytest.fixture
def base(monkeypatch):
    monkeypatch.setattr(identity, "_visible_gpu_name", lambda: None)
    return dataclasses.asdict(HarnessConfig())


def _capped(config, cap):
    out = copy.deepcopy(config)
    out["run"]["memory_cap_gib"] = cap
    return out


def _id(config):
    return cell_id(config, cell_identity(config))


def test_a_cap_is_part_of_a_capped_cells_identity_and_leaves_uncapped_ids_alone(base):
    # an uncapped cell keeps the id it had before the key existed: no "memory_cap_gib" in its identity
    assert "memory_cap_gib" not in cell_identity(base)
    assert "memory_cap_gib" not in cell_identity(_capped(base, None))
    # a capped oom must never be reused as an uncapped result (or under a bigger cap), nor the reverse
    ids = {_id(base), _id(_capped(base, 24)), _id(_capped(base, 48))}
    assert len(ids) == 3
    assert _id(_capped(base, 24)) == _id(_capped(base, 24.0))  # the same cap written differently is one cell


# ---- CPU: the watchdog ---------------------------------------------------------------------------


def test_the_watchdog_kills_past_the_cap_and_remembers_the_rss_reached():
    readings = iter([100 * MIB, 200 * MIB, 400 * MIB, 50 * MIB])
    killed = []
    watch = Watchdog(0.3, read=lambda pid: next(readings), kill=killed.append)
    assert not watch.check(42) and not watch.check(42)
    assert watch.check(42) and killed == [42]
    assert watch.tripped and watch.tripped_bytes == 400 * MIB
    assert watch.error() == ("out of memory under run.memory_cap_gib=0.3 (307 MiB): the worker's resident memory "
                             "reached 400 MiB and the cap's watchdog killed it")
    block = watch.block()
    assert block["in_force"] is True and block["mechanism"] == "host_rss_watchdog" and block["tripped"] is True
    assert block["peak_rss_mib"] == 400.0 and block["rss_reached_mib"] == 400.0 and block["gib"] == 0.3


def test_a_gone_worker_is_not_a_trip():
    watch = Watchdog(0.3, read=lambda pid: None, kill=lambda pid: pytest.fail("killed a gone worker"))
    assert not watch.check(42) and not watch.tripped and watch.block()["peak_rss_mib"] is None


def test_the_watchdog_thread_stops_after_a_trip():
    killed = []
    watch = Watchdog(0.001, poll_s=0.01, read=lambda pid: 10 * MIB, kill=killed.append).start(7)
    watch._thread.join(timeout=5)
    watch.stop()
    assert killed == [7] and watch.tripped


def _proc(root: Path, pid: int, rss_kb: int, kids=(), threads=(None,)):
    folder = root / str(pid)
    (folder / "task").mkdir(parents=True)
    (folder / "status").write_text(f"Name:\tx\nVmPeak:\t99999 kB\nVmRSS:\t{rss_kb} kB\n")
    for i, tid in enumerate(threads):
        task = folder / "task" / str(tid or pid)
        task.mkdir()
        (task / "children").write_text(" ".join(map(str, kids)) if i == 0 else "")


def test_tree_rss_sums_the_worker_and_every_process_under_it(tmp_path):
    _proc(tmp_path, 10, 1000, kids=(11, 12), threads=(10, 13))
    _proc(tmp_path, 11, 200, kids=(14,))
    _proc(tmp_path, 12, 30)
    _proc(tmp_path, 14, 4)
    assert tree_rss(10, tmp_path) == (1000 + 200 + 30 + 4) << 10
    assert tree_rss(99, tmp_path) is None  # gone


def test_tree_rss_reads_this_process():
    assert tree_rss(__import__("os").getpid()) > 10 * MIB


def test_only_a_capped_cpu_cell_gets_a_watchdog(base):
    assert watchdog_for(base, "cpu") is None
    assert watchdog_for(_capped(base, 2), "cuda:NVIDIA H100") is None  # on CUDA the worker sets the memory fraction
    assert watchdog_for(_capped(base, 2), "cpu").cap_gib == 2.0


# ---- CUDA: the memory fraction -------------------------------------------------------------------


class FakeCuda:
    """torch.cuda as apply_cuda_cap uses it: an 80 GiB device, a context, torch's reserve."""

    def __init__(self, total=80 * GIB, used=600 * MIB, reserved=2 * MIB):
        self.total, self.used, self.reserved = total, used, reserved
        self.fraction = None

    def mem_get_info(self, device=None):
        return self.total - self.used, self.total

    def memory_reserved(self, device=None):
        return self.reserved

    def set_per_process_memory_fraction(self, fraction, device=None):
        assert 0 <= fraction <= 1
        self.fraction = (fraction, device)


def test_the_fraction_is_cap_minus_the_measured_context_over_the_device():
    cuda = FakeCuda()
    block = apply_cuda_cap(24, cuda, 0)
    context = 600 * MIB - 2 * MIB
    assert block["context_mib"] == pytest.approx(context / MIB, abs=0.1)
    assert cuda.fraction == (pytest.approx((24 * GIB - context) / (80 * GIB)), 0)
    assert block["in_force"] is True and block["fraction"] == cuda.fraction[0] and block["mechanism"] == "cuda_memory_fraction"
    # what the allocator may reserve plus the context is the cap
    assert block["fraction"] * cuda.total + context == pytest.approx(24 * GIB)


def test_nvmls_figure_for_this_process_beats_the_device_total_on_a_shared_device():
    cuda = FakeCuda(used=40 * GIB)  # another process holds 40 GiB
    block = apply_cuda_cap(24, cuda, 0, process_used=500 * MIB)
    assert block["context_mib"] == pytest.approx(498.0)
    assert cuda.fraction[0] == pytest.approx((24 * GIB - 498 * MIB) / (80 * GIB))
    assert block["context_method"].startswith("NVML")


def test_a_cap_at_or_above_the_device_is_not_in_force():
    cuda = FakeCuda(total=24 * GIB)
    block = apply_cuda_cap(24, cuda, 0)
    assert block["in_force"] is False and cuda.fraction is None and "not more than the cap" in block["not_in_force"]


def test_a_cap_below_the_context_is_an_oom_of_the_cap():
    with pytest.raises(CapBelowContext) as info:
        apply_cuda_cap(0.25, FakeCuda(used=400 * MIB), 0)
    assert classify(info.value) == "oom"
    assert "run.memory_cap_gib=0.25" in one_line(info.value) and "CUDA context" in one_line(info.value)
    record = {}
    memcap.on_oom(record, info.value)
    assert record["oom"] == {"reason": "memory_cap", "memory_cap_gib": 0.25}
    assert record["memory_cap"]["in_force"] is True and record["memory_cap"]["context_mib"] == pytest.approx(398.0)


def test_cuda_fraction_arithmetic():
    assert cuda_fraction(24 * GIB, 1 * GIB, 80 * GIB) == pytest.approx(23 / 80)
    assert cuda_fraction(80 * GIB, 1 * GIB, 80 * GIB) is None


def test_a_cuda_oom_under_a_cap_in_force_is_the_caps():
    assert memcap.oom_reason({"gib": 24, "in_force": True})["reason"] == "memory_cap"
    assert memcap.oom_reason({"gib": 100, "in_force": False})["reason"] == "allocator"
    assert memcap.oom_reason(None)["reason"] == "allocator"


def test_the_worker_on_cpu_only_notes_the_cap():
    assert memcap.apply_in_worker(None, "cpu") is None
    assert memcap.apply_in_worker(0.5, "cpu") == {"gib": 0.5, "mechanism": "host_rss_watchdog"}
    # a framework that trains in its own runner process: a fraction set in the worker would not reach it
    block = memcap.apply_in_worker(24, "cuda", runner="litgpt")
    assert block["in_force"] is False and "litgpt" in block["not_in_force"]


# ---- how the parent settles a capped cell --------------------------------------------------------


def _plan(tmp_path, base):
    config = _capped(base, 0.3)
    ident = cell_identity(config)
    cid = cell_id(config, ident)
    cell_dir = tmp_path / "cells" / cid
    cell_dir.mkdir(parents=True)
    return CellPlan(cid, ident, config, {}, cell_dir)


def _tripped(cap=0.3, rss=512 * MIB):
    watch = Watchdog(cap, read=lambda pid: rss, kill=lambda pid: None)
    watch.check(1)
    return watch


def _outcome(watch, code=-9, timed_out=False):
    return {"code": code, "timed_out": timed_out, "timeout_s": 60.0, "wall": 1.5, "oom": (None, None), "watch": watch}


def test_a_worker_the_cap_killed_ends_oom_memory_cap_never_crashed(tmp_path, base):
    plan = _plan(tmp_path, base)
    _collect(plan, "a1", True, {}, _outcome(_tripped()))
    record = read_json(plan.cell_dir / RECORD_NAME)
    assert record["status"] == "oom", record["error"]
    assert record["oom"] == {"reason": "memory_cap", "memory_cap_gib": 0.3, "rss_reached_mib": 512.0}
    assert record["error"].startswith("out of memory under run.memory_cap_gib=0.3") and "512 MiB" in record["error"]
    assert record["memory_cap"]["in_force"] is True and record["memory_cap"]["tripped"] is True
    assert record["worker_exit_code"] == -9


def test_a_sigkill_the_cap_did_not_cause_stays_crashed_and_an_ok_record_says_the_cap_was_in_force(tmp_path, base):
    plan = _plan(tmp_path, base)
    calm = Watchdog(0.3, read=lambda pid: 100 * MIB, kill=lambda pid: None)
    calm.check(1)
    _collect(plan, "a1", True, {}, _outcome(calm))
    record = read_json(plan.cell_dir / RECORD_NAME)
    assert record["status"] == "crashed" and "oom" not in record
    # a worker that wrote its own ok record: the parent adds what its watchdog saw
    from harness.files import write_json_atomic
    from harness.store.records import new_record

    write_json_atomic(plan.cell_dir / RECORD_NAME, new_record(plan.cell_id, "ok", plan.config, attempt="a2",
                                                              memory_cap={"gib": 0.3, "mechanism": "host_rss_watchdog"}))
    _collect(plan, "a2", True, {}, _outcome(calm, code=0))
    record = read_json(plan.cell_dir / RECORD_NAME)
    assert record["status"] == "ok"
    assert record["memory_cap"] == {**calm.block(), "gib": 0.3}
    assert record["memory_cap"]["in_force"] is True and record["memory_cap"]["peak_rss_mib"] == 100.0


def test_a_timeout_stays_a_timeout(tmp_path, base):
    plan = _plan(tmp_path, base)
    _collect(plan, "a1", True, {}, _outcome(Watchdog(0.3), code=None, timed_out=True))
    assert read_json(plan.cell_dir / RECORD_NAME)["status"] == "timeout"


def test_an_evaluation_the_cap_ended_is_oom_and_the_trained_record_stays_ok(tmp_path, base):
    from harness.files import write_json_atomic
    from harness.store import layout as store
    from harness.store.records import new_record

    plan = _plan(tmp_path, base)
    write_json_atomic(plan.cell_dir / RECORD_NAME, new_record(plan.cell_id, "ok", plan.config, attempt="a1"))
    _collect(plan, "a1", True, {"perplexity": "perplexity-x"}, _outcome(_tripped()))
    assert read_json(plan.cell_dir / RECORD_NAME)["status"] == "ok"
    result = store.read_eval(plan.cell_dir, "perplexity-x")
    assert result["status"] == "oom" and "memory_cap_gib=0.3" in result["error"]
