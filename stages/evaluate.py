"""Stage `evaluate@<model>`: one model of the chapter on the test set.

    python -m stages.evaluate MODEL TEST OUTPUT
    (dvc.yaml: models/<model>.keras data/split/test metrics/eval/<model>)

MODEL is a models/*.keras file; TEST is data/split/test (the model takes pictures,
resized to its own input size) or data/features (it takes the cached VGG16 test
features, as the head does). Writes into OUTPUT (metrics/eval/<model>/), with DVCLive:
metrics.json ({loss, accuracy, precision, recall, roc_auc, confusion}), the ROC,
precision-recall and confusion-matrix data under plots/sklearn/ (`Live.log_sklearn_plot`,
what `dvc plots` draws), and predictions.json, the dog probability of every test image.
The `summary` stage gathers the models.
"""

from dogs_vs_cats.config import load_params
from dogs_vs_cats.evaluate import evaluate
from dogs_vs_cats.stage import run


def main(model_file, test, output):
    results = evaluate(model_file, test, output, load_params().evaluate.batch_size)
    print(
        f"{model_file}: accuracy {results['accuracy']:.4f}, loss {results['loss']:.4f}, "
        f"ROC AUC {results['roc_auc']:.4f}; wrote {output}/"
    )


if __name__ == "__main__":
    run(main, inputs=("MODEL", "TEST"), outputs=("OUTPUT",))
