import json

import numpy as np
import pytest

from dogs_vs_cats.errors import StageError
from dogs_vs_cats.evaluate import binary_metrics, evaluate


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
    assert binary_metrics(labels, scores)["roc_auc"] == pytest.approx(brute_force_auc(labels, scores), abs=1e-6)


def test_perfect_and_inverted_classifiers():
    labels = np.array([0, 0, 1, 1])
    assert binary_metrics(labels, np.array([0.1, 0.2, 0.8, 0.9]))["roc_auc"] == 1.0
    inverted = binary_metrics(labels, np.array([0.9, 0.8, 0.2, 0.1]))
    assert inverted["roc_auc"] == 0.0 and inverted["accuracy"] == 0.0 and inverted["precision"] == 0.0


def test_evaluate_writes_metrics_and_curves_dvc_can_plot(tmp_path, rng):
    """A model on cached features: metrics.json, the sklearn plots (checked against
    thresholding by hand) and the per-image predictions, all in one folder."""
    import keras
    features = rng.normal(0, 1, (40, 2, 2, 8)).astype("float32")
    labels = (features[:, 0, 0, 0] + rng.normal(0, 0.7, 40) > 0).astype("float32")
    folder = tmp_path / "features"
    folder.mkdir()
    np.save(folder / "test_features.npy", features)
    np.save(folder / "test_labels.npy", labels)
    model = keras.Sequential([keras.Input((2, 2, 8)), keras.layers.Flatten(),
                              keras.layers.Dense(1, activation="sigmoid")])
    kernel = np.zeros((32, 1), np.float32)
    kernel[0] = 3.0
    model.layers[-1].set_weights([kernel, np.zeros(1)])
    model.save(tmp_path / "head.keras")
    scores = model.predict(features, verbose=0).ravel()
    results = evaluate(tmp_path / "head.keras", folder, tmp_path / "eval/head", batch_size=16)
    written = json.loads((tmp_path / "eval/head/metrics.json").read_text())
    assert written["accuracy"] == results["accuracy"] and written["confusion"] == results["confusion"]
    assert written["parameters"] == 33
    assert written["roc_auc"] == pytest.approx(brute_force_auc(labels, scores), abs=1e-6)
    roc = json.loads((tmp_path / "eval/head/plots/sklearn/roc.json").read_text())["roc"]
    fpr, tpr = [row["fpr"] for row in roc], [row["tpr"] for row in roc]
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1 and roc[0]["threshold"] == 1.0
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    pr = json.loads((tmp_path / "eval/head/plots/sklearn/precision_recall.json").read_text())["precision_recall"]
    for row in pr[:-1:5]:
        chosen = scores >= row["threshold"]
        assert row["precision"] == pytest.approx(labels[chosen].mean(), abs=1e-6)
        assert row["recall"] == pytest.approx(labels[chosen].sum() / labels.sum(), abs=1e-6)
    cells = json.loads((tmp_path / "eval/head/plots/sklearn/confusion_matrix.json").read_text())
    assert sum(c == {"actual": "dog", "predicted": "dog"} for c in cells) == results["confusion"]["tp"]
    predictions = json.loads((tmp_path / "eval/head/predictions.json").read_text())["predictions"]
    assert [p["probability"] for p in predictions] == pytest.approx(scores.tolist(), abs=1e-6)
    assert not list(tmp_path.glob("eval/.~dogs-vs-cats-*"))


def test_a_model_that_does_not_fit_the_test_set_is_a_one_line_error(tmp_path, rng):
    import keras
    folder = tmp_path / "features"
    folder.mkdir()
    np.save(folder / "test_features.npy", rng.normal(0, 1, (6, 2, 2, 8)).astype("float32"))
    np.save(folder / "test_labels.npy", np.array([0, 1] * 3, np.float32))
    image_model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.GlobalAveragePooling2D(),
                                    keras.layers.Dense(1, activation="sigmoid")])
    image_model.save(tmp_path / "scratch.keras")
    with pytest.raises(StageError, match=r"scratch.keras takes inputs of shape \(32, 32, 3\), but .*features gives "
                                         r"\(2, 2, 8\): evaluate the head on data/features"):
        evaluate(tmp_path / "scratch.keras", folder, tmp_path / "eval/scratch", batch_size=4)
    (tmp_path / "notes.keras").write_text("my notes")
    with pytest.raises(StageError, match="notes.keras could not be loaded"):
        evaluate(tmp_path / "notes.keras", folder, tmp_path / "eval/notes", batch_size=4)
    assert not (tmp_path / "eval").exists()
