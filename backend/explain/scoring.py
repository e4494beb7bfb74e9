"""Scores of an explanation as a predictor of "the feature fires", framed like delphi's detection scorer.

The predictor is judged on activating and non-activating examples in equal numbers (balanced), so a rule
is not rewarded for the base rate of a sparse feature. The offline explainer sees every held-out token, so
it takes the balance in expectation: with TPR = TP / activating and FPR = FP / non-activating,
balanced precision = TPR / (TPR + FPR), recall = TPR. The LLM judges see a drawn, balanced set of examples
and are scored on it directly."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field


class Score(BaseModel):
    """How well an explanation predicts activation: balanced precision, recall, F1 and accuracy."""

    precision: float
    recall: float
    f1: float
    accuracy: float
    n_active: int = Field(description="activating examples (tokens or contexts) it was judged on")
    n_inactive: int = Field(description="non-activating examples it was judged on (before balancing)")
    true_positives: int
    false_positives: int


def _f1(precision, recall):
    total = precision + recall
    return np.where(total > 0, 2 * precision * recall / np.where(total > 0, total, 1), 0.0)


def balanced_arrays(tp, predicted, n_active, n_inactive) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, f1, accuracy) of many predictors at once, balanced in expectation.

    `tp` and `predicted` count the tokens where the feature fires and the rule matches, and where the rule
    matches; `n_active` / `n_inactive` the tokens where the feature fires / does not."""
    tp, predicted = np.asarray(tp, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    n_active, n_inactive = np.asarray(n_active, dtype=np.float64), np.asarray(n_inactive, dtype=np.float64)
    tpr = np.where(n_active > 0, tp / np.maximum(n_active, 1), 0.0)
    fpr = np.where(n_inactive > 0, (predicted - tp) / np.maximum(n_inactive, 1), 0.0)
    precision = np.where(tpr + fpr > 0, tpr / np.where(tpr + fpr > 0, tpr + fpr, 1), 0.0)
    accuracy = (tpr + (1 - fpr)) / 2
    return precision, tpr, _f1(precision, tpr), accuracy


def balanced_score(tp: int, predicted: int, n_active: int, n_inactive: int) -> Score:
    p, r, f, a = (float(x) for x in balanced_arrays(tp, predicted, n_active, n_inactive))
    return Score(precision=p, recall=r, f1=f, accuracy=a, n_active=n_active, n_inactive=n_inactive,
                 true_positives=int(tp), false_positives=int(predicted - tp))


def judged_score(truth: list[bool], predicted: list[bool]) -> Score:
    """Plain precision / recall / F1 / accuracy of a judge on a set of examples that is already balanced."""
    t, p = np.asarray(truth, dtype=bool), np.asarray(predicted, dtype=bool)
    tp, fp = int((t & p).sum()), int((~t & p).sum())
    fn = int((t & ~p).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = float(_f1(np.float64(precision), np.float64(recall)))
    return Score(precision=precision, recall=recall, f1=f1, accuracy=float((t == p).mean()) if len(t) else 0.0,
                 n_active=int(t.sum()), n_inactive=int((~t).sum()), true_positives=tp, false_positives=fp)
