"""Stage `split`: pick train/validation/test images per class from the raw archive.

    python -m stages.split OUTPUT REPORT     (dvc.yaml: data/split metrics/data.json)

The archive `data.archive` is read in place (Kaggle's competition zip holding
`train.zip`, or a bare `train.zip`); only the chosen images are written, in the book's
layout OUTPUT/{train,validation,test}/{cats,dogs}/, and REPORT counts them and names
every member skipped, converted or ignored. Each chosen image is decoded once; a bad one
is skipped, reported and replaced by the next index.
"""

from dogs_vs_cats.catalog import SPLITS
from dogs_vs_cats.config import load_params
from dogs_vs_cats.split import make_split
from dogs_vs_cats.stage import run


def main(output, report):
    params = load_params()
    split = params.split
    summary = make_split(params.data.archive, split, split.order, split.seed, output=output, report=report)
    counts = ", ".join(f"{name} {summary['counts'][name]['cats']}+{summary['counts'][name]['dogs']}" for name in SPLITS)
    print(f"wrote {output}: {counts}; skipped {summary['skipped_count']}, "
          f"converted {summary['converted_count']}, ignored {summary['ignored']['count']} members")


if __name__ == "__main__":
    run(main, outputs=("OUTPUT", "REPORT"))
