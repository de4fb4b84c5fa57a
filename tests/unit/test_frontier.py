"""The OOM frontier: launch order, the domination rule, skips kept in the manifest, and how they read."""

from __future__ import annotations

import copy
import dataclasses

import pytest

from harness.config.schema import HarnessConfig
from harness.files import write_json_atomic
from harness.store import identity
from harness.store.layout import MARK, load_sweep, read_manifest, update_manifest, write_manifest
from harness.store.records import RECORD_NAME, new_record
from harness.sweep import frontier
from harness.sweep.cell import plan_cell
from harness.sweep.frontier import ENDED, dominates, inferred_skip, order

pytestmark = pytest.mark.unit


@pytest.fixture
def base(monkeypatch):
    monkeypatch.setattr(identity, "_visible_gpu_name", lambda: None)
    config = dataclasses.asdict(HarnessConfig())
    config["run"]["memory_cap_gib"] = 0.3
    return config


def _with(config, **changes):
    """A copy with dotted keys changed: _with(c, **{"train.batch_size": 4})."""
    out = copy.deepcopy(config)
    for dotted, value in changes.items():
        node = out
        *path, last = dotted.split(".")
        for key in path:
            node = node[key]
        node[last] = value
    return out


def _shape(config, b, s, r=16):
    return _with(config, **{"train.batch_size": b, "train.max_seq_len": s, "lora.r": r})


def _cell(config):
    return {"config": config, "identity": identity.cell_identity(config)}


# ---- order --------------------------------------------------------------------------------------


def test_cells_launch_in_ascending_predicted_memory(base, tmp_path):
    grid = [_shape(base, 4, 128), _shape(base, 1, 64), _shape(base, 4, 64), _shape(base, 1, 128)]
    plans = [plan_cell(c, tmp_path) for c in grid]
    launched = [frontier.shape(grid[i])[:2] for i in order(plans)]
    assert launched == [(1, 64), (1, 128), (4, 64), (4, 128)]
    predicted = [frontier.predicted_mib(grid[i], "cpu") for i in order(plans)]
    assert predicted == sorted(predicted)


def test_unmodelled_cells_go_last_and_ties_keep_the_grid_order(base, tmp_path, monkeypatch):
    grid = [_shape(base, 1, 64, r) for r in (8, 16, 32, 64)]
    plans = [plan_cell(c, tmp_path) for c in grid]
    fake = {8: 500.0, 16: None, 32: 400.0, 64: 400.0}
    monkeypatch.setattr(frontier, "predicted_mib", lambda config, device: fake[config["lora"]["r"]])
    assert order(plans) == [2, 3, 0, 1]


def test_the_sweeper_launches_its_jobs_in_the_chosen_order():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from hydra_plugins.harness_sweeper.harness_sweeper import ValidatingSweeper

    sweeper = ValidatingSweeper(max_batch_size=None, params=None)
    parsed = OverridesParser.create().parse_overrides(["lora.r=8,16,32", "train.lr=0.1"])
    assert sweeper.split_arguments(parsed, None) == [[["lora.r=8", "train.lr=0.1"], ["lora.r=16", "train.lr=0.1"],
                                                      ["lora.r=32", "train.lr=0.1"]]]
    sweeper._order = [2, 0, 1]
    assert sweeper.split_arguments(parsed, None) == [[["lora.r=32", "train.lr=0.1"], ["lora.r=8", "train.lr=0.1"],
                                                      ["lora.r=16", "train.lr=0.1"]]]
    assert sweeper.split_arguments(parsed, 2) == [[["lora.r=32", "train.lr=0.1"], ["lora.r=8", "train.lr=0.1"]],
                                                  [["lora.r=16", "train.lr=0.1"]]]


# ---- the rule -----------------------------------------------------------------------------------


@pytest.mark.parametrize("b,s,r", [(1, 64, 16), (4, 64, 16), (1, 128, 16), (1, 64, 32), (4, 128, 32)])
def test_a_cell_no_smaller_in_batch_length_and_rank_is_ruled_out(base, b, s, r):
    why = dominates(_cell(_shape(base, 1, 64, 16)), _cell(_shape(base, b, s, r)))
    assert why is not None and "planner" in why


@pytest.mark.parametrize("b,s,r", [(4, 32, 16), (1, 128, 8), (2, 32, 32)])
def test_a_cell_smaller_in_any_of_the_three_is_not(base, b, s, r):
    assert dominates(_cell(_shape(base, 2, 64, 16)), _cell(_shape(base, b, s, r))) is None


@pytest.mark.parametrize("key,value", [
    ("train.lr", 1e-3), ("train.grad_accum", 2), ("model.name", "tiny-qwen"), ("quant.mode", "4bit"),
    ("train.gradient_checkpointing", True), ("data.max_examples", 10), ("run.memory_cap_gib", 1.0),
    ("run.memory_cap_gib", None),
])
def test_only_batch_length_and_rank_may_differ(base, key, value):
    small = _shape(base, 1, 64)
    assert dominates(_cell(small), _cell(_with(_shape(base, 4, 128), **{key: value}))) is None


def test_another_device_class_is_not_ruled_out(base, monkeypatch):
    small = _cell(_shape(base, 1, 64))
    monkeypatch.setattr(identity, "_visible_gpu_name", lambda: "NVIDIA H100")
    large = _cell(_with(_shape(base, 4, 128), **{"run.device": "cuda"}))
    assert large["identity"]["device"] == "cuda:NVIDIA H100"
    assert dominates(small, large) is None


def test_the_planner_must_predict_no_less(base, monkeypatch):
    small, large = _cell(_shape(base, 1, 64)), _cell(_shape(base, 4, 128))
    monkeypatch.setattr(frontier, "predicted_mib", lambda config, device: 900.0 - config["train"]["batch_size"])
    assert dominates(small, large) is None
    monkeypatch.setattr(frontier, "predicted_mib", lambda config, device: None)
    assert dominates(small, large) is None


# ---- the check in a sweep -----------------------------------------------------------------------


@pytest.fixture
def sweep(base, tmp_path):
    """A run root with a capped sweep of four cells; job 0 (b1 x 64) has a stored oom record."""
    root = tmp_path / "runs"
    sweep_dir = root / "sweep"
    sweep_dir.mkdir(parents=True)
    plans = [plan_cell(_shape(base, b, s), root) for b, s in ((1, 64), (1, 128), (4, 64), (4, 128))]
    write_manifest(sweep_dir, {str(i): {"cell_id": p.cell_id, "evals": p.evals, "overrides": []} for i, p in enumerate(plans)})
    small = plans[0]
    small.cell_dir.mkdir(parents=True)
    write_json_atomic(small.cell_dir / RECORD_NAME, new_record(small.cell_id, "oom", small.config, identity=small.identity,
                                                               oom={"reason": "memory_cap"}))
    return sweep_dir, plans


def _ended(sweep_dir, num, plan, status):
    update_manifest(sweep_dir, num, {"cell_id": plan.cell_id, "evals": plan.evals, "overrides": [], ENDED: status})


def test_a_cell_is_skipped_once_a_cell_it_dominates_ended_oom_in_this_run(sweep):
    sweep_dir, plans = sweep
    assert inferred_skip(read_manifest(sweep_dir), "3", plans[3]) is None  # a stored oom of an earlier run: not this run's
    _ended(sweep_dir, "0", plans[0], "oom")
    mark = inferred_skip(read_manifest(sweep_dir), "3", plans[3])
    assert mark["inferred_from"] == plans[0].cell_id
    assert mark["error"].startswith(f"does not fit (inferred from {plans[0].cell_id}): ")
    assert "(memory_cap)" in mark["error"] and "train.batch_size 1->4" in mark["error"]
    assert inferred_skip(read_manifest(sweep_dir), "0", plans[0]) is None  # never itself


def test_a_cell_stored_ok_is_never_skipped(sweep):
    sweep_dir, plans = sweep
    _ended(sweep_dir, "0", plans[0], "oom")
    plans[3].cell_dir.mkdir(parents=True)
    write_json_atomic(plans[3].cell_dir / RECORD_NAME, new_record(plans[3].cell_id, "ok", plans[3].config))
    assert inferred_skip(read_manifest(sweep_dir), "3", plans[3]) is None


def test_only_a_training_oom_rules_out(sweep):
    sweep_dir, plans = sweep
    _ended(sweep_dir, "0", plans[0], "oom")  # e.g. the view was oom because an evaluation ran out
    write_json_atomic(plans[0].cell_dir / RECORD_NAME, new_record(plans[0].cell_id, "ok", plans[0].config,
                                                                  identity=plans[0].identity))
    assert inferred_skip(read_manifest(sweep_dir), "3", plans[3]) is None


def test_a_rerun_checks_again_and_a_bigger_cap_runs_the_cell(sweep, base, tmp_path):
    sweep_dir, plans = sweep
    _ended(sweep_dir, "0", plans[0], "oom")
    update_manifest(sweep_dir, "3", {"cell_id": plans[3].cell_id, "evals": plans[3].evals, "overrides": [],
                                     MARK: inferred_skip(read_manifest(sweep_dir), "3", plans[3])})
    assert load_sweep(sweep_dir)[3]["status"] == "skipped"
    # the rerun's sweeper writes a fresh manifest: no outcome, no skip until job 0 runs out again
    write_manifest(sweep_dir, {str(i): {"cell_id": p.cell_id, "evals": p.evals, "overrides": []} for i, p in enumerate(plans)})
    assert inferred_skip(read_manifest(sweep_dir), "3", plans[3]) is None
    assert load_sweep(sweep_dir)[3]["status"] == "skipped" and "not run" in load_sweep(sweep_dir)[3]["error"]
    assert not load_sweep(sweep_dir)[3]["error"].startswith("does not fit")
    # a bigger cap is other cells: the smaller cap's oom rules none of them out
    bigger = plan_cell(_with(_shape(base, 4, 128), **{"run.memory_cap_gib": 2.0}), sweep_dir.parent)
    _ended(sweep_dir, "0", plans[0], "oom")
    assert inferred_skip(read_manifest(sweep_dir), "3", bigger) is None


# ---- how a skip reads ---------------------------------------------------------------------------


@pytest.fixture
def skipped(sweep):
    sweep_dir, plans = sweep
    _ended(sweep_dir, "0", plans[0], "oom")
    for num in ("1", "2", "3"):
        plan = plans[int(num)]
        mark = inferred_skip(read_manifest(sweep_dir), num, plan)
        update_manifest(sweep_dir, num, {"cell_id": plan.cell_id, "evals": plan.evals, "overrides": [], MARK: mark})
    return sweep_dir, plans


def test_skips_live_in_the_manifest_not_in_the_cell_store(skipped):
    sweep_dir, plans = skipped
    for plan in plans[1:]:
        assert not (plan.cell_dir / RECORD_NAME).exists() and not plan.cell_dir.exists()
    views = load_sweep(sweep_dir)
    assert [v["status"] for v in views] == ["oom", "skipped", "skipped", "skipped"]
    assert all(v["error"].startswith(f"does not fit (inferred from {plans[0].cell_id})") for v in views[1:])
    assert views[3]["config"]["train"]["batch_size"] == 4  # the summary's axes need the config


def test_the_summary_shows_skipped_with_the_inference(skipped):
    from harness.report.summary import summarise

    sweep_dir, plans = skipped
    summary = summarise(sweep_dir)
    assert summary.axes[:2] == ["train.batch_size", "train.max_seq_len"]
    rows = {(r["train.batch_size"], r["train.max_seq_len"]): r for r in summary.rows}
    assert rows[(1, 64)]["status"] == "oom"
    for key in ((1, 128), (4, 64), (4, 128)):
        assert rows[key]["status"] == "skipped"
        assert rows[key]["error"].startswith(f"does not fit (inferred from {plans[0].cell_id})")
    assert "does not fit (inferred from" in (sweep_dir / "summary.md").read_text()


def test_the_report_draws_them_as_does_not_fit_inferred(skipped):
    from harness.report.data import load
    from harness.report.pivot import status_texts
    from harness.report.plots import label_of

    data = load([skipped[0]])
    labels = list(data.wide["status_label"])
    assert sorted(labels) == ["does not fit", "does not fit (inferred)", "does not fit (inferred)", "does not fit (inferred)"]
    assert sorted(status_texts(data), key=str) == sorted(labels)
    assert sorted(label_of(row) for row in data.wide.to_dict("records")) == sorted(labels)


def test_a_swept_cap_is_an_axis(base):
    from harness.report.rows import varied_axes

    assert varied_axes([base, _with(base, **{"run.memory_cap_gib": 1.0})]) == ["memory_cap_gib"]
    assert varied_axes([base, _with(base, **{"run.timeout_s": 5.0})]) == []


def test_the_progress_line_counts_a_skip_as_finished(skipped):
    from harness.store.progress import sweep_progress

    progress = sweep_progress(skipped[0])
    assert progress.total == 4 and progress.left == 0 and progress.failed == 4


def test_an_oom_on_a_shared_gpu_rules_nothing_out(sweep):
    sweep_dir, plans = sweep
    _ended(sweep_dir, "0", plans[0], "oom")
    record = new_record(plans[0].cell_id, "oom", plans[0].config, identity=plans[0].identity, oom={"reason": "allocator"})
    record["environment"] = {"launch": {"gpu_shared": True}}  # another cell held part of that GPU
    write_json_atomic(plans[0].cell_dir / RECORD_NAME, record)
    assert inferred_skip(read_manifest(sweep_dir), "3", plans[3]) is None
