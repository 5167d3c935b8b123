"""Stage `sample`: synthetic stand-ins for Kaggle's `train.zip` and `test1.zip`, generated from a seed.

    python -m stages.sample TRAIN_ZIP TEST_ZIP     (dvc.yaml: data/sample/train.zip data/sample/test1.zip)

Each picture is a cartoon cat or dog head on a cluttered background. The classes
differ in a combination of cues (ear shape, muzzle, eyes, whiskers, head shape), and
every cue is noisy: some dogs have upright ears, some cats a rounder face, fur colours
and backgrounds are shared, heads turn, shrink and get partly hidden. A convnet can
learn it; a single pixel statistic cannot. TEST_ZIP holds `test_images` unlabelled
pictures, test1/1.jpg, test1/2.jpg, ..., each a cat or a dog drawn by its seed, as
Kaggle's test set is laid out.
"""

from dogs_vs_cats.config import load_params
from dogs_vs_cats.sample import write_sample, write_test_sample
from dogs_vs_cats.stage import run


def main(train_zip, test_zip):
    sample = load_params().sample
    write_sample(train_zip, sample.per_class, sample.seed, sample.min_side, sample.max_side)
    write_test_sample(test_zip, sample.test_images, sample.seed, sample.min_side, sample.max_side)
    print(f"wrote {train_zip}: {2 * sample.per_class} images; {test_zip}: {sample.test_images} images")


if __name__ == "__main__":
    run(main, outputs=("TRAIN_ZIP", "TEST_ZIP"))
