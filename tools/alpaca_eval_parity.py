"""Recompute the AlpacaEval length-controlled win rates pinned in tests/unit/test_judge_lc_parity.py.

Runs only where alpaca_eval is installed (its own venv, e.g. ``/tmp/ae/bin/python
tools/alpaca_eval_parity.py``); the harness never imports alpaca_eval. It writes the fixed
table (seeded, 805 rows: index, instruction_difficulty, reference and model lengths, soft
preference) to tests/fixtures/judge/lc_table.csv, then prints alpaca_eval's
``length_controlled_winrate`` and ``lc_standard_error`` for the two GLMs the harness
computes: ``length_controlled_noreg`` (with instruction difficulty; the harness does not
regularise toward df_gamed.csv) and ``length_controlled_minimal`` (no difficulty, first
400 rows). alpaca_eval downloads df_gamed.csv for the difficulty column: it is replaced
here by a local file built from the table, so no network is needed.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

TABLE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "judge" / "lc_table.csv"
ROWS, MINIMAL_ROWS, SEED = 805, 400, 3
# seed 3: on this table sorting the items as strings ("0", "1", "10", ...) builds other GroupKFold folds
# and moves the LC win rate by 0.03-0.06 points, so the pinned test fails without the index order


def make_table(rows: int = ROWS, seed: int = SEED) -> list:
    """Deterministic rows: longer model outputs win more often, harder instructions less."""
    rng = random.Random(seed)
    out = []
    for index in range(rows):
        difficulty = round(rng.gauss(0.0, 1.0), 6)
        ref = rng.randint(200, 2500)
        model = max(1, ref + rng.randint(-900, 1500))
        base = 0.55 + 0.25 * (model - ref) / 2000 - 0.08 * difficulty + rng.gauss(0, 0.2)
        pref = 1 + min(1.0, max(0.0, round(base, 6)))  # alpaca convention: 1 reference wins, 2 model wins
        out.append({"index": index, "instruction_difficulty": difficulty, "len_reference": ref,
                    "len_model": model, "preference": pref})
    return out


def write_table(rows: list, path: Path = TABLE) -> None:
    """The table as CSV (the test reads it)."""
    header = list(rows[0])
    lines = [",".join(header)] + [",".join(str(r[k]) for k in header) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def alpaca_lc(rows: list, glm_name: str, gamed_csv: Path) -> dict:
    """alpaca_eval's get_length_controlled_winrate on ``rows``, df_gamed.csv replaced by ``gamed_csv``."""
    import pandas as pd
    from alpaca_eval.metrics import glm_winrate

    glm_winrate.hf_hub_download = lambda **_: str(gamed_csv)  # only the difficulty column is read (no regularisation)
    df = pd.DataFrame({"index": [r["index"] for r in rows], "preference": [r["preference"] for r in rows],
                       "output_1": ["x" * r["len_reference"] for r in rows],
                       "output_2": ["y" * r["len_model"] for r in rows],
                       "generator_1": "reference", "generator_2": "model", "annotator": "parity"})
    metrics = glm_winrate.get_length_controlled_winrate(df, glm_name=glm_name, save_weights_dir=None,
                                                        is_warn_extreme_changes=False)
    return {k: float(metrics[k]) for k in ("win_rate", "length_controlled_winrate", "lc_standard_error")}


def main() -> int:
    """Write the table, print the reference values to pin."""
    import tempfile

    import alpaca_eval

    rows = make_table()
    write_table(rows)
    with tempfile.TemporaryDirectory() as tmp:
        gamed = Path(tmp) / "df_gamed.csv"
        gamed.write_text("index,instruction_difficulty,model\n" + "".join(
            f"{r['index']},{r['instruction_difficulty']},m\n" for r in rows), encoding="utf-8")
        print(f"alpaca_eval {alpaca_eval.__version__}; table {TABLE} ({len(rows)} rows, seed {SEED})")
        print("length_controlled_noreg", alpaca_lc(rows, "length_controlled_noreg", gamed))
        print(f"length_controlled_minimal (first {MINIMAL_ROWS})",
              alpaca_lc(rows[:MINIMAL_ROWS], "length_controlled_minimal", gamed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
