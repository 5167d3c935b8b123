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


def image_split(root, rng, per_class):
    """A split folder of noisy pictures, dogs brighter than cats, cat.<n>.jpg and dog.<n>.jpg."""
    from PIL import Image
    for folder, kind, level in (("cats", "cat", 115), ("dogs", "dog", 140)):
        (root / folder).mkdir(parents=True)
        for index in range(per_class):
            # each picture's own brightness overlaps the other class's: some answers are wrong
            pixels = np.clip(rng.normal(level + rng.normal(0, 25), 40, (20, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / folder / f"{kind}.{index}.jpg")


def brightness_model(scale):
    """P(dog) rising with the mean brightness, `scale` times too confident; mirror-sensitive
    enough (a column's weight) that test-time views change its outputs."""
    import keras
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(1, (1, 16), use_bias=False)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs, outputs)
    kernel = np.linspace(0.5, 1.5, 16, dtype=np.float32)[None, :, None, None] * np.ones((1, 16, 3, 1), np.float32) / 48
    model.layers[2].set_weights([kernel])
    model.layers[-1].set_weights([np.array([[20.0 * scale]], np.float32), np.array([-10.0 * scale], np.float32)])
    return model


def test_evaluate_reports_test_time_views_and_a_temperature_from_the_validation_photos_only(tmp_path, rng,
                                                                                            monkeypatch):
    from dogs_vs_cats import evaluate as module
    from dogs_vs_cats.calibration import read_temperature
    from dogs_vs_cats.predict import predict_batch, tta_views
    image_split(tmp_path / "split/validation", rng, 12)
    image_split(tmp_path / "split/test", rng, 10)
    brightness_model(8.0).save(tmp_path / "model.keras")
    fitted = []
    fit = module.fit_temperature
    monkeypatch.setattr(module, "fit_temperature", lambda labels, p: fitted.append((labels, p)) or fit(labels, p))
    plain = evaluate(tmp_path / "model.keras", tmp_path / "split/test", tmp_path / "eval/one", 4)
    assert "tta" not in plain and "calibrated" not in plain and not fitted  # no validation given: nothing fitted
    results = evaluate(tmp_path / "model.keras", tmp_path / "split/test", tmp_path / "eval/two", 4,
                       tmp_path / "split/validation", 2, tmp_path / "model.calibration.json")
    # The figures without views are those of a plain evaluation; the views' are their own.
    assert {key: results[key] for key in plain} == plain
    assert results["tta"]["views"] == 2 and 0 <= results["tta"]["accuracy"] <= 1
    assert results["tta"]["loss"] != results["loss"]
    # The temperature saw the 24 validation photos, over the same 2 views, and nothing of the test's 20.
    (labels, p), = fitted
    assert len(labels) == len(p) == 24 and list(labels) == [0] * 12 + [1] * 12
    temperature = results["calibrated"]["temperature"]
    assert temperature > 1.5  # the model is 8 times too confident: the temperature softens it
    assert read_temperature(tmp_path / "model.keras") == temperature
    written = json.loads((tmp_path / "model.calibration.json").read_text())
    assert written["views"] == 2 and written["validation_loss_calibrated"] <= written["validation_loss"]
    assert written["fitted_on"].endswith("validation")
    metrics = json.loads((tmp_path / "eval/two/metrics.json").read_text())
    assert metrics["calibrated"]["temperature"] == temperature and metrics["tta"]["views"] == 2
    # One view is no view: the batch itself, and the model's own outputs.
    import keras
    model = keras.models.load_model(tmp_path / "model.keras")
    batch = rng.integers(0, 256, (5, 16, 16, 3)).astype(np.float32)
    (view,) = tta_views(batch, 1)
    np.testing.assert_array_equal(np.asarray(view), batch)
    np.testing.assert_array_equal(predict_batch(model, batch, 1),
                                  np.asarray(model.predict_on_batch(batch), np.float64).ravel())
