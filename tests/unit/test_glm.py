"""AlpacaEval's length-controlled win rate on synthetic preferences with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sklearn

from harness.judge import glm

pytestmark = pytest.mark.unit


def _lengths(n, rng, model_extra=600.0):
    ref = rng.normal(1000, 300, n).clip(50)
    return ref, ref + rng.normal(model_extra, 300, n)


def test_length_only_judge_is_corrected_to_fifty():
    rng = np.random.default_rng(0)
    ref, model = _lengths(400, rng)
    s = np.asarray(glm.std_delta_len(ref, model))
    p = 1 / (1 + np.exp(2.5 * np.tanh(s)))  # zero intercept: only length matters; the longer model wins
    y = rng.random(400) < p  # the judge's discrete verdicts
    pref = np.where(y, 2.0, 1.0)
    raw = (pref - 1).mean() * 100
    out = glm.length_controlled(pref, ref, model)
    assert raw > 70
    assert out["value"] == pytest.approx(50, abs=6) and out["fit"] == "cv"
    assert out["weights"]["np.tanh(std_delta_len)"] < -1
    assert sklearn.get_config()["enable_metadata_routing"] is False  # never set globally


def test_soft_preferences_recover_the_truth_closely():
    rng = np.random.default_rng(1)
    ref, model = _lengths(300, rng)
    s = np.asarray(glm.std_delta_len(ref, model))
    p = 1 / (1 + np.exp(2.0 * np.tanh(s)))
    out = glm.length_controlled(1 + p, ref, model)
    assert out["value"] == pytest.approx(50, abs=1.5)


def test_intercept_only_truth_keeps_the_raw_win_rate():
    rng = np.random.default_rng(2)
    # lengths spread both ways: with a large one-sided shift the equal-length point is an
    # extrapolation and the estimate gets noisy (what alpaca_eval's gamed-baseline prior damps)
    ref, model = _lengths(400, rng, model_extra=0)
    y = rng.random(400) < 1 / (1 + math.exp(-0.8))  # no length effect
    pref = np.where(y, 2.0, 1.0)
    raw = (pref - 1).mean() * 100
    out = glm.length_controlled(pref, ref, model)
    assert out["value"] == pytest.approx(raw, abs=3)


def test_difficulty_feature_and_small_sets():
    rng = np.random.default_rng(3)
    ref, model = _lengths(40, rng, model_extra=0)
    diff = rng.normal(0, 1, 40)
    p = 1 / (1 + np.exp(-(0.5 - 1.0 * diff)))
    out = glm.length_controlled(1 + p, ref, model, difficulty=diff)
    assert set(out["weights"]) == {"np.tanh(std_delta_len)", "instruction_difficulty", "not_gamed_baseline"}
    assert len(out["predictions"]) == 40 and out["value"] == pytest.approx(p.mean() * 100, abs=5)
    few = glm.length_controlled([1.2, 1.9, 1.6, 1.4], [10, 50, 30, 20], [40, 20, 30, 60])
    assert few["fit"] == "plain" and 0 < few["value"] < 100


def test_degenerate_inputs():
    assert glm.length_controlled([1.5] * 3, [1, 2, 3], [1, 2, 3], identical=True)["value"] == 50
    assert glm.length_controlled([2.0] * 20, list(range(20)), [5] * 20)["value"] == 100
    assert glm.length_controlled([], [], [])["value"] is None
    assert glm.std_delta_len([5, 6], [1, 2]) == [0.0, 0.0]  # constant delta: no length signal
    with pytest.raises(ValueError):
        glm.length_controlled([1.5], [1, 2], [1])


def test_extreme_change_follows_alpaca_eval() -> None:
    from harness.judge.glm import extreme_change

    assert not extreme_change(20, 12) and extreme_change(20, 9)  # min(20 - 5, 20 - 10) = 10
    assert not extreme_change(20, 40) and extreme_change(20, 41)  # max(20 + 20, 20 + 10) = 40
    assert extreme_change(52, 6.4) and not extreme_change(50, 45)
