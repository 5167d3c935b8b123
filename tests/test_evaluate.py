import numpy as np
import pytest

from stages.evaluate import binary_metrics, roc_curve


def brute_force_auc(labels, scores):
    """Probability that a random positive scores above a random negative (ties count half)."""
    positives, negatives = scores[labels == 1], scores[labels == 0]
    wins = (positives[:, None] > negatives[None, :]).sum() + 0.5 * (positives[:, None] == negatives[None, :]).sum()
    return wins / (len(positives) * len(negatives))


def test_metrics_on_a_known_case():
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    probabilities = np.array([0.1, 0.6, 0.2, 0.9, 0.4, 0.8, 0.7, 0.3])
    metrics = binary_metrics(labels, probabilities)
    assert metrics["confusion"] == {"tn": 3, "fp": 1, "fn": 1, "tp": 3}
    assert metrics["accuracy"] == pytest.approx(0.75)
    assert metrics["precision"] == pytest.approx(0.75)
    assert metrics["recall"] == pytest.approx(0.75)
    assert metrics["roc_auc"] == pytest.approx(brute_force_auc(labels, probabilities))
    expected_loss = -np.mean(labels * np.log(probabilities) + (1 - labels) * np.log(1 - probabilities))
    assert metrics["loss"] == pytest.approx(expected_loss, abs=1e-6)


def test_auc_handles_ties_and_matches_brute_force(rng):
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.uniform(0, 1, 300) * 0.6 + labels * 0.3, 1)  # many ties
    fpr, tpr, thresholds = roc_curve(labels.astype(float), scores)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0) and np.all(np.diff(thresholds) < 0)
    assert binary_metrics(labels, scores)["roc_auc"] == pytest.approx(brute_force_auc(labels, scores), abs=1e-6)


def test_perfect_and_inverted_classifiers():
    labels = np.array([0, 0, 1, 1])
    assert binary_metrics(labels, np.array([0.1, 0.2, 0.8, 0.9]))["roc_auc"] == 1.0
    inverted = binary_metrics(labels, np.array([0.9, 0.8, 0.2, 0.1]))
    assert inverted["roc_auc"] == 0.0 and inverted["accuracy"] == 0.0 and inverted["precision"] == 0.0


def test_precision_recall_curve_matches_thresholding(rng):
    from stages.evaluate import precision_recall_curve
    labels = rng.integers(0, 2, 200).astype(float)
    scores = np.round(rng.uniform(0, 1, 200), 2)
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    for p, r, t in list(zip(precision, recall, thresholds))[::7]:
        chosen = scores >= t
        assert p == pytest.approx(labels[chosen].mean())
        assert r == pytest.approx(labels[chosen].sum() / labels.sum())
    assert recall[-1] == 1 and np.all(np.diff(recall) >= 0)
