"""AlpacaEval 2.0's length-controlled win rate: a logistic GLM on the judge's soft preferences.

Follows alpaca_eval's ``metrics/glm_winrate.py`` (tatsu-lab/alpaca_eval, Apache-2.0;
Dubois et al. 2024, arXiv 2404.04475), formula ``length_controlled_v1``::

    logit P(model wins) = a * tanh(std_delta_len) + b * instruction_difficulty + c

where ``std_delta_len = (len(reference) - len(model)) / std`` over the items (characters),
``c`` is alpaca_eval's ``not_gamed_baseline`` column (a constant 1, so an intercept; the
fit itself has ``fit_intercept=False``). Without a difficulty table the formula is
``tanh(std_delta_len) + intercept`` ("minimal"). The length-controlled win rate is the
mean predicted probability with ``std_delta_len = 0``, times 100.

Fitting is alpaca_eval's ``fit_LogisticRegressionCV(is_ytrue_proba=True)``: each item is
duplicated with label 1 weighted by p and label 0 weighted by 1 - p (the soft preference
as a target), L1 penalty, liblinear, ``random_state=123``, C chosen by 5-fold
``GroupKFold`` over the original items with a log loss on the soft targets; fewer than
10 items falls back to a plain ``LogisticRegression(C=100)``.

Not done: alpaca_eval regularises each fit toward two deliberately gamed baselines
(``df_gamed.csv`` from the hub, weight ``regularize_to_baseline_lambda=0.2``). That file
is not shipped and needs the network, so numbers here are the unregularised GLM. When
nearly every output is much longer (or shorter) than its reference, ``tanh(std_delta_len)``
is almost constant and the equal-length point is an extrapolation: the estimate is then
noisy (400 synthetic items with no length effect and outputs +600 characters: 65 % raw,
63-78 % LC by seed), which is what their prior toward the gamed baselines damps.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Dict, List, Optional, Sequence

N_SPLITS = 5
MIN_ITEMS_CV = 10
"""Below this many items cross-validation has too few items per fold: plain C=100 instead."""
PLAIN_C = 100.0
SEED = 123
DEFINITION = (
    "alpaca_eval length_controlled_v1 GLM (tanh(std_delta_len) [+ instruction_difficulty] + intercept, "
    "L1 liblinear, C by GroupKFold(5) on soft log loss), predicted at equal length; without alpaca_eval's "
    "regularisation toward gamed baselines (df_gamed.csv)"
)
"""What the LC rows measure, carried on each row as ``definition``."""


def _logloss_continuous(y_true, y_pred, true_prob):
    """alpaca_eval's ``logloss_continuous``: log loss against the soft target each duplicated row stands for."""
    import numpy as np

    # y_true is the duplicated 0/1 label; true_prob is the weight of that label, so both
    # copies of an item map back to the same soft target p
    target = np.where(y_true == 1, true_prob, 1 - true_prob)
    pred = np.clip(y_pred, 1e-15, 1 - 1e-15)
    return -np.mean(target * np.log(pred) + (1 - target) * np.log(1 - pred))


def _fit(features, prob):
    """Fit the soft-label logistic regression the way alpaca_eval does; returns the fitted model."""
    import numpy as np
    import sklearn
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.metrics import make_scorer
    from sklearn.model_selection import GroupKFold

    n = len(prob)
    data = np.vstack([features, features])
    labels = np.r_[np.ones(n), np.zeros(n)].astype(int)
    weight = np.r_[prob, 1 - prob]
    groups = np.r_[np.arange(n), np.arange(n)]
    common = dict(l1_ratio=1.0, solver="liblinear", fit_intercept=False, random_state=SEED)
    # routing is thread-local under config_context: never a global set_config
    with sklearn.config_context(enable_metadata_routing=True), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if n < MIN_ITEMS_CV:
            model = LogisticRegression(C=PLAIN_C, **common)
            model.fit(data, labels, sample_weight=weight)
            return model
        scorer = make_scorer(_logloss_continuous, response_method="predict_proba",
                             greater_is_better=False).set_score_request(true_prob=True)
        model = LogisticRegressionCV(cv=GroupKFold(n_splits=N_SPLITS), scoring=scorer, l1_ratios=(1.0,),
                                     solver="liblinear", fit_intercept=False, random_state=SEED,
                                     use_legacy_attributes=False)
        model.fit(data, labels, sample_weight=weight, groups=groups, true_prob=weight)
        return model


def std_delta_len(len_reference: Sequence[float], len_model: Sequence[float]) -> List[float]:
    """(len(reference) - len(model)) / its sample std over the items; all zeros when the std is 0 or undefined."""
    deltas = [float(r) - float(m) for r, m in zip(len_reference, len_model)]
    if len(deltas) < 2:
        return [0.0] * len(deltas)
    mean = sum(deltas) / len(deltas)
    std = math.sqrt(sum((d - mean) ** 2 for d in deltas) / (len(deltas) - 1))
    # a constant delta cannot be told apart from the intercept; alpaca_eval would divide by 0
    return [d / std for d in deltas] if std > 0 else [0.0] * len(deltas)


def length_controlled(preference: Sequence[float], len_reference: Sequence[float], len_model: Sequence[float],
                      difficulty: Optional[Sequence[float]] = None, identical: bool = False) -> Dict[str, Any]:
    """Length-controlled win rate from alpaca-convention preferences (1 = reference wins, 2 = model wins).

    ``len_*`` are output lengths in characters; ``difficulty`` is each item's
    ``instruction_difficulty`` (None: the minimal formula). ``identical``: the model's
    outputs are the reference outputs (baseline against itself), which alpaca_eval
    defines as exactly 50. Returns ``value`` (%), ``predictions`` (per item, in [0, 1],
    at equal length), ``weights`` (by feature) and ``fit`` ("cv", "plain", "constant",
    "identical" or "empty").
    """
    import numpy as np

    n = len(preference)
    if not (len(len_reference) == len(len_model) == n) or (difficulty is not None and len(difficulty) != n):
        raise ValueError("length_controlled: preference, lengths and difficulty must have one value per item")
    names = ["np.tanh(std_delta_len)"] + (["instruction_difficulty"] if difficulty is not None else []) + ["not_gamed_baseline"]
    if n == 0:
        return {"value": None, "predictions": [], "weights": {}, "fit": "empty"}
    if identical:
        return {"value": 50.0, "predictions": [0.5] * n, "weights": {k: 0.0 for k in names}, "fit": "identical"}
    prob = np.asarray(preference, dtype=float) - 1
    if np.all(prob == prob[0]):
        # one soft label for every item: length carries no information and the MLE is that label
        return {"value": float(prob[0] * 100), "predictions": [float(prob[0])] * n,
                "weights": {k: 0.0 for k in names}, "fit": "constant"}
    columns = [np.tanh(np.asarray(std_delta_len(len_reference, len_model)))]
    test = [np.zeros(n)]
    if difficulty is not None:
        columns.append(np.asarray(difficulty, dtype=float))
        test.append(np.asarray(difficulty, dtype=float))
    columns.append(np.ones(n))
    test.append(np.ones(n))
    model = _fit(np.column_stack(columns), prob)
    predictions = model.predict_proba(np.column_stack(test))[:, 1]
    return {"value": float(predictions.mean() * 100), "predictions": [float(p) for p in predictions],
            "weights": dict(zip(names, (float(c) for c in model.coef_[0]))),
            "fit": "plain" if n < MIN_ITEMS_CV else "cv"}


def extreme_change(raw: float, lc: float, abs_diff: float = 10, rel_diff: float = 4) -> bool:
    """alpaca_eval's ``get_is_extreme_changes``: is the LC win rate so far from the raw one that the GLM likely failed?

    Too small: below min(raw - raw / rel_diff, raw - abs_diff); too large: above
    max(raw + (100 - raw) / rel_diff, raw + abs_diff). Both in %.
    """
    too_small = lc < min(raw - raw / rel_diff, raw - abs_diff)
    too_large = lc > max(raw + (100 - raw) / rel_diff, raw + abs_diff)
    return bool(too_small or too_large)
