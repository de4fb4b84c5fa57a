"""The first non-finite loss is found, from a backend's report or from the curves, and stops hf training."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest

from harness.measure.divergence import describe, divergence, is_finite

pytestmark = pytest.mark.unit
NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("value, finite", [(1.5, True), (0, True), (NAN, False), (INF, False), (-INF, False),
                                           (None, False), ("1.0", False), (True, False)])
def test_is_finite(value, finite):
    assert is_finite(value) is finite


def test_finite_training_has_no_divergence():
    assert divergence({"loss_curve": [[1, 3.2], [2, 2.9]], "eval_curve": [[2, 3.0]], "diverged": None}) is None
    assert divergence({}) is None


def test_backend_report_wins():
    stats = {"diverged": {"step": 4, "metric": "eval_loss", "value": "inf"}, "loss_curve": [[1, NAN]]}
    assert divergence(stats) == {"step": 4, "metric": "eval_loss", "value": "inf"}


def test_first_non_finite_point_of_the_curves():
    stats = {"loss_curve": [[1, 3.0], [2, 2.0], [3, NAN], [4, INF]], "eval_curve": [[2, INF]]}
    assert divergence(stats) == {"step": 2, "metric": "eval_loss", "value": "inf"}
    stats["eval_curve"] = [[3, NAN]]  # at equal steps the train loss is named
    assert divergence(stats) == {"step": 3, "metric": "loss", "value": "nan"}


def test_none_and_negative_infinity_count():
    assert divergence({"loss_curve": [[1, 2.0], [2, None]]}) == {"step": 2, "metric": "loss", "value": "None"}
    assert divergence({"eval_curve": [[5, -INF]]}) == {"step": 5, "metric": "eval_loss", "value": "-inf"}


def test_curves_read_back_from_json():
    # a record on disk carries NaN as a JSON literal (Python's json writes and reads it)
    stats = json.loads(json.dumps({"loss_curve": [[1, 2.0], [2, NAN]]}))
    assert divergence(stats) == {"step": 2, "metric": "loss", "value": "nan"}


def test_describe_names_metric_value_and_step():
    assert describe({"step": 2, "metric": "loss", "value": "nan"}) == "training diverged: loss = nan at step 2"
    assert describe({"step": None, "metric": "eval_loss", "value": "inf"}) == "training diverged: eval_loss = inf"


def _watch():
    pytest.importorskip("transformers")
    from harness.backends.hf import _callbacks

    cfg = SimpleNamespace(train=SimpleNamespace(early_stopping_patience=0, eval_every=0))
    return next(cb for cb in _callbacks(cfg, meter=None) if hasattr(cb, "diverged"))


def _run(watch, events):
    """Feed (step, kind, values) events; returns the control flag after each."""
    flags = []
    for step, kind, values in events:
        state, control = SimpleNamespace(global_step=step), SimpleNamespace(should_training_stop=False)
        if kind == "log":
            watch.on_log(None, state, control, logs=values)
        else:
            watch.on_evaluate(None, state, control, metrics=values)
        flags.append(control.should_training_stop)
    return flags


def test_hf_callback_stops_at_the_first_non_finite_loss():
    watch = _watch()
    flags = _run(watch, [(1, "log", {"loss": 3.1, "grad_norm": 2.0}), (2, "log", {"loss": NAN}),
                         (3, "log", {"loss": INF})])
    assert flags == [False, True, False]  # stops once; the first point is kept
    assert watch.diverged == {"step": 2, "metric": "loss", "value": "nan"}


def test_hf_callback_watches_eval_loss_and_ignores_other_keys():
    watch = _watch()
    flags = _run(watch, [(1, "log", {"train_loss": NAN}), (2, "log", {"grad_norm": math.inf}),
                         (2, "eval", {"eval_loss": 2.5}), (4, "eval", {"eval_loss": INF})])
    assert flags == [False, False, False, True]
    assert watch.diverged == {"step": 4, "metric": "eval_loss", "value": "inf"}


def test_hf_callback_counts_a_missing_loss_value():
    watch = _watch()
    assert _run(watch, [(3, "log", {"loss": None})]) == [True]
    assert watch.diverged == {"step": 3, "metric": "loss", "value": "None"}
