"""Stage `submission`: Kaggle's deliverable, P(dog) for every image of the competition's test1.zip.

    python -m stages.submission MODEL OUTPUT     (dvc.yaml: models/${submission.model}.keras submissions/submission.csv)

Reads `submission.archive` (the competition's dogs-vs-cats.zip, which holds test1.zip,
or test1.zip itself; files test1/<id>.jpg) and writes OUTPUT with the header `id,label`,
one row per id in numeric order, label = P(dog) as the competition's log-loss scoring
wants. Probabilities are clipped to [clip, 1 - clip]: log loss charges -ln(p) for a
wrong answer given with confidence 1 - p, so one confident mistake at p = 1e-7 costs 16,
at 0.005 it costs 5.3, while clipping a right answer at 0.995 costs 0.005. An image that
cannot be read gets 0.5 (ln 2) and is reported. `tta` > 1 averages over that many views
of each image (`python -m stages.predict --help`).
"""

from pathlib import Path

from dogs_vs_cats.config import load_params
from dogs_vs_cats.stage import run
from dogs_vs_cats.submission import id_gap, UNREADABLE, write_submission


def main(model_file, output):
    own = load_params().submission
    rows, skipped = write_submission(own.archive, model_file, output, own.clip, own.tta, own.batch_size)
    for image_id, reason in skipped:
        print(f"image {image_id}: {reason}; it gets P(dog) = {UNREADABLE}")
    # The ids the file holds, read back: Kaggle scores a submission only with every one.
    ids = [int(line.split(",")[0]) for line in Path(output).read_text().splitlines()[1:]]
    print(f"wrote {output}: {rows} rows (model {own.model}, tta {own.tta}, "
          f"clip [{own.clip}, {1 - own.clip}]), {len(skipped)} unreadable, {id_gap(ids)}")


if __name__ == "__main__":
    run(main, inputs=("MODEL",), outputs=("OUTPUT",))
