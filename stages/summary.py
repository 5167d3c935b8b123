"""Stage `summary`: the chapter's ladder in one place, from every model's evaluation and training log.

    python -m stages.summary EVALUATIONS LOGS METRICS SUMMARY LADDER CURVES
    (dvc.yaml: metrics/eval dvclive metrics/evaluate.json metrics/summary.md metrics/ladder.json metrics/curves)

Reads EVALUATIONS/<model>/metrics.json (the `evaluate@<model>` stages) and each training
stage's DVCLive log LOGS/<stage>/, and writes:
- METRICS: {model: {loss, accuracy, precision, recall, roc_auc, confusion}};
- SUMMARY: the model-by-model table against the book;
- LADDER: test accuracy of every model next to the book's, for `dvc plots`;
- CURVES/<stage>.json: Listing 5.24's smoothed curves (`curves.smoothing`, the book's
  0.8): per epoch, training and validation accuracy and loss, raw and smoothed.
"""

from dogs_vs_cats.catalog import MODELS
from dogs_vs_cats.config import load_params
from dogs_vs_cats.stage import run
from dogs_vs_cats.summary import write_summary


def main(evaluations, logs, metrics, summary, ladder, curves):
    params = load_params()
    accuracies = write_summary(evaluations, logs, params.data.archive, params.curves.smoothing,
                               metrics=metrics, summary=summary, ladder=ladder, curves=curves)
    for model in MODELS:
        print(f"{model.name}: test accuracy {accuracies[model.name]:.1%} (book {model.book_accuracy:.0%})")


if __name__ == "__main__":
    run(main, inputs=("EVALUATIONS", "LOGS"), outputs=("METRICS", "SUMMARY", "LADDER", "CURVES"))
