"""The whole DAG through DVC, in a throwaway git + DVC workspace with tiny params."""

import json
import re
import zipfile

import numpy as np
import pytest
import yaml
from PIL import Image

from dogs_vs_cats.nets import conv_base, count_trainable, frozen_base_classifier, small_convnet
from tests.workspace import (
    copy_workspace,
    dvc,
    REPO,
    restore,
    run,
    stage_command,
    stages_run,
    tamper_keeping_size_and_mtime,
    update_params,
)

pytestmark = pytest.mark.slow

MODELS = {"scratch", "scratch_augmented", "head", "features_augmented", "finetuned"}
TRAINING = {"scratch", "scratch_augmented", "train_head", "features_augmented", "finetune", "mnist"}
USING = {"export", "submission"}  # the stages that use the fine-tuned model
EVALUATIONS = {f"evaluate@{model}" for model in MODELS}
ALL_STAGES = {"check", "sample", "split", "weights", "features", "summary", "visualize",
              "mnist_data"} | EVALUATIONS | TRAINING | USING


@pytest.fixture(scope="module")
def workspace(first_run, tmp_path_factory):
    path, output = first_run
    assert stages_run(output) == ALL_STAGES
    return copy_workspace(path, tmp_path_factory.mktemp("pipeline") / "ws")


def test_every_output_exists_with_the_right_shape(workspace):
    for split, count in (("train", 16), ("validation", 8), ("test", 8)):
        features = np.load(workspace / f"data/features/{split}_features.npy", mmap_mode="r")
        labels = np.load(workspace / f"data/features/{split}_labels.npy")
        assert features.shape == (count, 1, 1, 512) and features.dtype == np.float32
        assert labels.tolist() == [0.0] * (count // 2) + [1.0] * (count // 2)
        assert len(list((workspace / "data/split" / split / "cats").glob("cat.*.jpg"))) == count // 2
    for name in MODELS | {"mnist"}:
        assert (workspace / f"models/{name}.keras").is_file()
    metrics = json.loads((workspace / "metrics/evaluate.json").read_text())
    assert set(metrics) == MODELS
    for model in metrics.values():
        assert 0 <= model["accuracy"] <= 1 and 0 <= model["roc_auc"] <= 1 and model["loss"] > 0
        assert sum(model["confusion"].values()) == 8
    data = json.loads((workspace / "metrics/data.json").read_text())
    assert data["counts"]["train"] == {"cats": 8, "dogs": 8}
    for stage in TRAINING - {"mnist"}:
        steps = (workspace / f"dvclive/{stage}/plots/metrics/eval/loss.tsv").read_text().splitlines()
        assert {"step", "loss"} <= set(steps[0].split("\t")) and len(steps) == 2  # header + 1 epoch
    summary = (workspace / "metrics/summary.md").read_text().splitlines()
    rows = [line for line in summary if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == ["scratch", "scratch_augmented", "head", "features_augmented",
                                                   "finetuned"]
    assert "| 71% |" in rows[0] and "| 97% |" in rows[-1]
    assert "| 1 of 30 (best 1) |" in rows[0] and "| 1 of 100 (best 1) |" in rows[-1]
    assert "Data: the synthetic sample" in "\n".join(summary)
    scratch_count = small_convnet(48).count_params()
    assert f"| {scratch_count:,} ({scratch_count:,}) |" in rows[0]
    vgg_head = frozen_base_classifier(conv_base("none", 48), "vgg16", 256)
    assert f"| {vgg_head.count_params():,} ({count_trainable(vgg_head):,}) |" in rows[3] and " min |" in rows[3]
    mnist = json.loads((workspace / "metrics/mnist.json").read_text())
    assert 0 <= mnist["accuracy"] <= 1
    roc = json.loads((workspace / "metrics/eval/finetuned/plots/sklearn/roc.json").read_text())["roc"]
    assert roc[0]["fpr"] == 0 and roc[-1]["tpr"] == 1 and roc[0]["threshold"] == 1
    pr_file = workspace / "metrics/eval/head/plots/sklearn/precision_recall.json"
    pr = json.loads(pr_file.read_text())["precision_recall"]
    assert pr[0]["recall"] == 1 and all(0 <= row["precision"] <= 1 for row in pr)
    confusion = json.loads((workspace / "metrics/eval/scratch/plots/sklearn/confusion_matrix.json").read_text())
    assert len(confusion) == 8 and {row["actual"] for row in confusion} == {"cat", "dog"}
    for stage in TRAINING:
        best = json.loads((workspace / f"dvclive/{stage}/metrics.json").read_text())["best"]
        assert 0 <= best["train"]["accuracy"] <= 1 and (stage == "mnist") == ("eval" not in best)
    assert (workspace / "dvclive/mnist/plots/metrics/train/accuracy.tsv").read_text().count("\n") == 2
    predictions = json.loads((workspace / "metrics/eval/finetuned/predictions.json").read_text())["predictions"]
    assert len(predictions) == 8 and {p["label"] for p in predictions} == {0, 1}
    for stage in TRAINING - {"mnist"}:
        curves = json.loads((workspace / f"metrics/curves/{stage}.json").read_text())["curves"]
        assert len(curves) == 1 and curves[0]["smoothed_val_loss"] == curves[0]["val_loss"]


# Run where this project cannot be imported: Keras and TensorFlow alone must read the models.
KERAS_ALONE = """
import sys
sys.modules["stages"] = None
import keras, numpy as np, tensorflow as tf
inputs = dict(np.load(sys.argv[1]))
outputs = {name: keras.models.load_model(f"models/{name}.keras").predict(inputs[name], verbose=0)
           for name in inputs if not name.startswith("photo")}
served = tf.saved_model.load("models/finetuned")
outputs["served"] = np.array([served.serve(tf.constant(inputs[f"photo{i}"][None]))["p_dog"].numpy()[0]
                              for i in range(sum(name.startswith("photo") for name in inputs))])
np.savez(sys.argv[2], **outputs)
"""


def test_models_load_and_predict_with_keras_alone(workspace, tmp_path):
    import keras
    import tensorflow as tf

    from dogs_vs_cats.images import decode, load_image
    paths = sorted(str(p) for p in (workspace / "data/split").rglob("*.jpg"))[:20]
    images = np.stack([load_image(path, 48) for path in paths])
    inputs = {name: images for name in ("scratch", "scratch_augmented", "features_augmented", "finetuned")}
    inputs["head"] = np.load(workspace / "data/features/test_features.npy")
    inputs["mnist"] = np.random.default_rng(0).integers(0, 256, (20, 28, 28, 1)).astype("float32")
    photos = {f"photo{i}": tf.io.decode_jpeg(open(path, "rb").read(), channels=3).numpy() for i,
              path in enumerate(paths)}
    np.savez(tmp_path / "inputs.npz", **inputs, **photos)
    run(workspace, "python", "-I", "-c", KERAS_ALONE, str(tmp_path / "inputs.npz"), str(tmp_path / "outputs.npz"))
    outputs = np.load(tmp_path / "outputs.npz")
    for name, batch in inputs.items():
        expected = keras.models.load_model(workspace / f"models/{name}.keras").predict(batch, verbose=0)
        np.testing.assert_allclose(outputs[name], expected, atol=1e-5, err_msg=name)
    # The SavedModel resizes uint8 photos of any size itself, as training does.
    finetuned = keras.models.load_model(workspace / "models/finetuned.keras")
    expected = finetuned.predict(np.stack([decode(open(path, "rb").read(), 48) for path in paths]), verbose=0).ravel()
    np.testing.assert_allclose(outputs["served"], expected, atol=1e-5)
    assert len({photo.shape for photo in photos.values()}) > 1


def test_submission_covers_the_sample_test_set(workspace):
    lines = (workspace / "submissions/submission.csv").read_text().splitlines()
    assert lines[0] == "id,label" and [int(line.split(",")[0]) for line in lines[1:]] == list(range(1, 13))
    assert all(0.005 <= float(line.split(",")[1]) <= 0.995 for line in lines[1:])
    with zipfile.ZipFile(workspace / "data/sample/test1.zip") as archive:
        assert sorted(archive.namelist(), key=lambda n: int(n[6:-4])) == [f"test1/{i}.jpg" for i in range(1, 13)]


def test_visualize_writes_every_picture(workspace):
    names = sorted(p.name for p in (workspace / "metrics/visualize").iterdir())
    assert names == ["activations_block1_conv1.png", "activations_block3_conv1.png", "augmentation.png",
                     "filters_block1_conv1.png", "filters_block3_conv1.png", "gradcam.png", "most_wrong.png"]
    for name in names:
        image = Image.open(workspace / "metrics/visualize" / name)
        assert image.format == "PNG" and min(image.size) > 50


def test_report_is_one_self_contained_html_opening_with_the_ladder(workspace, tmp_path):
    built = run(REPO, "python", "-m", "report.build", str(tmp_path / "report.html"), "--project", str(workspace))
    assert built.stdout.strip().splitlines()[-1] == str(tmp_path / "report.html")
    html = (tmp_path / "report.html").read_text()
    assert "cdn.jsdelivr" not in html and 'src="static/' not in html and "{plot_divs}" not in html
    assert html.count("data:image/png;base64,") == 7
    assert html.count("vegaEmbed(") >= 30 and len(html) > 800_000
    first_plots = [html.index(title) for title in
                   ("Validation accuracy, every model", "Validation loss, every model",
                    "Test accuracy against the book", "Accuracy, scratch")]
    assert first_plots == sorted(first_plots)


def test_metrics_and_plots_are_visible_to_dvc(workspace):
    shown = json.loads(dvc(workspace, "metrics", "show", "--json").stdout)
    files = next(iter(shown.values()))["data"]
    assert files["metrics/evaluate.json"]["data"]["finetuned"]["accuracy"] >= 0
    plots = json.loads(dvc(workspace, "plots", "show", "--json").stdout, parse_constant=reject)["data"]
    for name in ("Confusion matrix, head, test set", "ROC, test set", "Loss, finetune",
                 "Validation accuracy, every model", "Validation loss, every model",
                 "Test accuracy against the book", "Accuracy, mnist"):
        assert name in plots and plots[name], name
    ladder = [row for plot in plots["Test accuracy against the book"] for row in plot["content"]["data"]["values"]]
    assert len(ladder) == 10 and {row["source"] for row in ladder} == {"this run", "book"}
    lines = plots["Validation accuracy, every model"][0]["content"]["data"]["values"]
    assert {re.search(r"(\w+)/plots/", row["filename"]).group(1) for row in lines} == \
        {"scratch", "scratch_augmented", "train_head", "features_augmented", "finetune"}


def reject(constant):
    raise ValueError(f"{constant} is not JSON")


def test_nothing_reruns_after_a_full_run(workspace):
    again = dvc(workspace, "repro")
    assert stages_run(again.stdout) == set()
    assert "up to date" in again.stdout


def test_speed_only_knobs_rerun_nothing(workspace):
    # Read by features, evaluate@<model> and submission, but not their deps (docs/params.md).
    update_params(workspace / "params.yaml", {"features": {"batch_size": 3}, "evaluate": {"batch_size": 5},
                                              "submission": {"batch_size": 7}})
    try:
        # Only `check` sees them (it validates every param, in about a second); no stage
        # that computes anything re-runs.
        assert set(changed_stages(workspace)) == {"check"}
        assert stages_run(dvc(workspace, "repro").stdout) == {"check"}
        update_params(workspace / "params.yaml", {"submission": {"tta": 2}})  # its other keys still are
        assert "submission" in changed_stages(workspace)
    finally:
        restore(workspace)


def test_fine_tuned_model_is_a_registry_artifact(workspace, tmp_path):
    restore(workspace)
    for name, path in (("finetuned", "models/finetuned.keras"), ("finetuned-savedmodel", "models/finetuned")):
        run(workspace, "git", "tag", "-a", f"{name}@v1.0.0", "-m", f"{name} v1.0.0")  # a version, as GTO tags it
        target = tmp_path / name
        dvc(workspace, "artifacts", "get", str(workspace), name, "--rev", "v1.0.0", "-o", str(target))
        if target.is_dir():
            assert sorted(p.name for p in target.iterdir()) == sorted(p.name for p in (workspace / path).iterdir())
        else:
            assert target.read_bytes() == (workspace / path).read_bytes()


def test_scratch_param_reruns_scratch_and_evaluate_only(workspace):
    update_params(workspace / "params.yaml", {"scratch": {"lr": 2.0e-4}})
    assert stages_run(dvc(workspace, "repro").stdout) == {"check", "scratch", "evaluate@scratch", "summary"}
    restore(workspace)


def test_head_param_reruns_head_evaluate_only(workspace):
    # Also: the archive is not read again (DVC knows its hash by size and mtime), and the
    # head trains under MirroredStrategy, one replica on a CPU.
    undo = tamper_keeping_size_and_mtime(workspace / "data/sample/train.zip")
    update_params(workspace / "params.yaml", {"train_head": {"lr": 1.0e-4, "distribute": "mirrored"}})
    try:
        changed = dvc(workspace, "repro")
    finally:
        undo()
    # finetune starts from features_augmented's head, as the book does: not from this one.
    assert stages_run(changed.stdout) == {"check", "train_head", "evaluate@head", "summary"}
    assert "train_head: MirroredStrategy over 1 replica(s)" in changed.stdout
    logged = yaml.safe_load((workspace / "dvclive/train_head/params.yaml").read_text())
    assert logged["distribute"] == "mirrored" and logged["lr"] == 1.0e-4
    assert json.loads((workspace / "dvclive/train_head/metrics.json").read_text())["step"] == 0
    # Starting from train_head's head makes models/head.keras finetune's dep instead.
    update_params(workspace / "params.yaml", {"finetune": {"start_from": "head"}})
    assert stages_run(dvc(workspace, "repro").stdout) == {"check", "finetune", "evaluate@finetuned", "summary",
                                                          "visualize"} | USING
    update_params(workspace / "params.yaml", {"train_head": {"lr": 2.0e-4}})
    assert stages_run(dvc(workspace, "repro", "train_head").stdout) == {"check", "train_head"}
    assert {"finetune", "evaluate@head"} <= set(changed_stages(workspace))  # finetune now starts from this head
    restore(workspace)


def changed_stages(workspace):
    """The stages `dvc status` says changed, each with what changed."""
    return json.loads(dvc(workspace, "status", "--json").stdout)


def test_image_size_reruns_features_and_below(workspace):
    # Every stage that resizes images declares image.size: they change with it, and what
    # reads their outputs follows (train_head after features, and so on), as DVC does.
    update_params(workspace / "params.yaml", {"image": {"size": 64}})
    try:
        assert set(changed_stages(workspace)) == {"check", "features", "scratch", "scratch_augmented",
                                                  "features_augmented", "finetune", "visualize"}
        # `check` runs, or comes back from DVC's run cache when these params were checked before.
        assert stages_run(dvc(workspace, "repro", "features").stdout) - {"check"} == {"features"}
        assert np.load(workspace / "data/features/train_features.npy").shape == (16, 2, 2, 512)
        assert "train_head" in changed_stages(workspace)  # its features changed
    finally:
        restore(workspace)


def test_new_weights_rerun_every_vgg16_stage_and_the_same_weights_nothing(workspace):
    import keras
    keras.utils.set_random_seed(3)
    keras.applications.VGG16(include_top=False, weights=None).save_weights(workspace / "other.weights.h5")
    update_params(workspace / "params.yaml", {"base": {"weights": "other.weights.h5"}})
    changed = dvc(workspace, "repro", "weights")
    assert stages_run(changed.stdout) == {"check", "weights"} and "weights: other.weights.h5" in changed.stdout
    # The three stages that load the base see a new file; everything else follows from them.
    assert set(changed_stages(workspace)) == {"features", "features_augmented", "finetune"}
    restore(workspace)
    again = dvc(workspace, "repro", "-f", "weights")  # the same bytes again...
    assert stages_run(again.stdout) == {"check", "weights"}
    assert changed_stages(workspace) == {}  # ...change nothing


def test_split_param_reruns_split_not_sample(workspace):
    update_params(workspace / "params.yaml", {"split": {"train": 6}})
    changed = dvc(workspace, "repro", "split")
    assert stages_run(changed.stdout) == {"check", "split"}
    assert len(list((workspace / "data/split/train/dogs").iterdir())) == 6
    assert stages_run(dvc(workspace, "repro", "split").stdout) == set()
    restore(workspace)


def test_stage_error_is_one_line(workspace):
    update_params(workspace / "params.yaml", {"data": {"archive": "data/raw/missing.zip"}})
    result = run(workspace, *stage_command("split", workspace / "params.yaml"), check=False)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "data/raw/missing.zip not found" in result.stderr and "kaggle competitions download" in result.stderr
    restore(workspace)
