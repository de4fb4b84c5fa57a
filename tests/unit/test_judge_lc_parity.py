"""AlpacaEval LC win rate and its standard error equal alpaca_eval's on a fixed 805-row table.

Pinned values: alpaca_eval 0.6.6 (scikit-learn 1.9.1), recomputed by
``/tmp/ae/bin/python tools/alpaca_eval_parity.py`` (which also writes the table,
tests/fixtures/judge/lc_table.csv, seeded). The harness fits alpaca_eval's GLM without
its regularisation toward gamed baselines, so the references are
``length_controlled_noreg`` (with instruction difficulty) and
``length_controlled_minimal`` (first 400 rows, no difficulty).
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest

from harness.judge import alpaca_eval as ae

pytestmark = pytest.mark.unit

TABLE = Path(__file__).resolve().parents[1] / "fixtures" / "judge" / "lc_table.csv"
NOREG = {"win_rate": 59.04970422360248, "lc": 56.21839422390812, "lc_se": 0.25516311214560256}
MINIMAL_400 = {"win_rate": 60.693872000000006, "lc": 58.285191731822586, "lc_se": 5.55806705462024e-16}


def _table(n=None):
    with TABLE.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return rows[:n] if n else rows


def _judged(rows, shuffle_seed=7):
    """ok judgments in a shuffled order: the score must not depend on the order they arrive in."""
    out = [{"who": "cell", "index": int(r["index"]), "repeat": 0, "status": "ok", "preference": float(r["preference"]),
            "output_chars": int(r["len_model"]), "reference_chars": int(r["len_reference"]), "identical": False,
            "flags": [], "cached": False, "fallback": False, "first_won": None} for r in rows]
    random.Random(shuffle_seed).shuffle(out)
    return out


def _inputs(rows, difficulty):
    table = {int(r["index"]): float(r["instruction_difficulty"]) for r in rows} if difficulty else None
    return ae.Inputs(prompt_path=TABLE, prompt_hash="h", messages=[], difficulty=table)


def _row(rows, metric):
    return next(r for r in rows if r["metric"] == metric)


@pytest.mark.parametrize("n, difficulty, metric, expected", [
    (None, True, "alpaca_lc_wr", NOREG), (400, False, "alpaca_lc_wr_minimal", MINIMAL_400)])
def test_lc_win_rate_and_se_equal_alpaca_eval(n, difficulty, metric, expected):
    table = _table(n)
    out = ae.rows(_judged(table), None, None, [], _inputs(table, difficulty), {"model": "j", "repeats": 1})
    assert _row(out, "alpaca_wr")["value"] == pytest.approx(expected["win_rate"], abs=1e-6)
    assert _row(out, metric)["value"] == pytest.approx(expected["lc"], abs=1e-6)
    assert _row(out, metric)["stderr"] == pytest.approx(expected["lc_se"], abs=1e-6)


def test_item_order_is_the_instruction_sets_order():
    assert ae.item_order([10, 2, 1, 100, 0]) == [0, 1, 2, 10, 100]
    assert ae.item_order(["b", 3, "a", 1]) == [1, 3, "a", "b"]
