"""The published-figure comparison runs torch-free and every row states an error."""

from __future__ import annotations

import math

import pytest

from harness.plan.anchors import ANCHORS, evaluate, table

pytestmark = pytest.mark.unit


def test_every_anchor_has_a_finite_error_and_the_table_summarises():
    for anchor in ANCHORS:
        row = evaluate(anchor)
        assert math.isfinite(row["error_pct"]) and row["pred_device"] > 0
    assert "absolute error vs published: median" in table()
