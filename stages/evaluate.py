"""Stage `evaluate@<model>`: one model of the chapter on the test set, and its temperature.

    python -m stages.evaluate MODEL VALIDATION TEST OUTPUT CALIBRATION
    (dvc.yaml: models/<model>.keras data/split/validation data/split/test metrics/eval/<model>
     models/<model>.calibration.json)

MODEL is a models/*.keras file; VALIDATION and TEST are data/split/validation and
data/split/test (the model takes pictures, resized to its own input size) or both
data/features (it takes the cached VGG16 features, as the head does). Writes into OUTPUT
(metrics/eval/<model>/), with DVCLive: metrics.json ({loss, accuracy, precision, recall,
roc_auc, confusion}; `tta`: accuracy and loss over the `submission.tta` views the
submission averages, for a model of pictures when tta > 1; `calibrated`: the test log
loss after the temperature), the ROC, precision-recall and confusion-matrix data under
plots/sklearn/ (`Live.log_sklearn_plot`, what `dvc plots` draws), and predictions.json,
the dog probability of every test image. CALIBRATION holds the temperature fitted on the
validation photos alone (docs/predict.md): `predict` and `submission` apply it. The
`summary` stage gathers the models.
"""

from dogs_vs_cats.config import load_params
from dogs_vs_cats.evaluate import evaluate
from dogs_vs_cats.stage import run


def main(model_file, validation, test, output, calibration):
    params = load_params()
    results = evaluate(model_file, test, output, params.evaluate.batch_size, validation, params.submission.tta,
                       calibration)
    tta = results.get("tta")
    with_views = f"; over {tta['views']} views accuracy {tta['accuracy']:.4f}, loss {tta['loss']:.4f}" if tta else ""
    calibrated = results["calibrated"]
    print(f"{model_file}: accuracy {results['accuracy']:.4f}, loss {results['loss']:.4f}, "
          f"ROC AUC {results['roc_auc']:.4f}{with_views}; temperature {calibrated['temperature']:.3g} "
          f"(from the validation photos): loss {calibrated['loss']:.4f}; wrote {output}/ and {calibration}")


if __name__ == "__main__":
    run(main, inputs=("MODEL", "VALIDATION", "TEST"), outputs=("OUTPUT", "CALIBRATION"))
