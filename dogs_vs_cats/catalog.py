"""The one table of names: the chapter's models and the stages that train them, their
files, the book's figures, the classes and the layout of the data on disk.

dvc.yaml passes every stage its paths; the names here are for what is not a stage's own
path: `predict --model finetuned`, the summary's ladder, error messages that say which
stage to run.
"""

import re
from pathlib import Path
from typing import NamedTuple

CLASSES = ("cat", "dog")  # label 0 and 1; dog is the positive class
CLASS_FOLDERS = ("cats", "dogs")  # data/split/<split>/<folder>, as flow_from_directory orders them
SPLITS = ("train", "validation", "test")
# Kaggle's names for the training images, which `split` also writes: cat.0.jpg, dog.12.jpg.
IMAGE_NAME = re.compile(r"(cat|dog)\.(0|[1-9][0-9]*)\.jpg")

SPLIT_DIR = Path("data/split")  # what `split` writes (dvc.yaml passes it to each stage)
WEIGHTS_FILE = Path("models/vgg16_notop.weights.h5")  # what `weights` writes and the VGG16 stages load
SAMPLE_ARCHIVE = "data/sample/train.zip"  # data.archive's default: the `sample` stage's archive


class Model(NamedTuple):
    name: str          # its key in evaluate.json and metrics/eval/<name>, its file models/<name>.keras
    stage: str         # the stage that trains it (and its DVCLive folder dvclive/<stage>)
    what: str          # the book's listings, in words
    book_accuracy: float
    book_epochs: int
    takes_images: bool  # False: it takes cached VGG16 features
    book_settings: dict  # the book's values of the stage's other params that change results

    @property
    def file(self):
        return Path(f"models/{self.name}.keras")


# The chapter's ladder, in the book's order.
MODELS = (
    Model("scratch", "scratch", "Listing 5.5: small convnet from scratch", 0.71, 30, True,
          {"batch_size": 20, "lr": 1e-4}),
    Model("scratch_augmented", "scratch_augmented", "Listings 5.13-5.14: + dropout, augmentation", 0.82, 100, True,
          {"batch_size": 32, "lr": 1e-4, "dropout": 0.5}),
    Model("head", "train_head", "Listing 5.18: dense head on cached VGG16 features", 0.90, 30, False,
          {"batch_size": 20, "lr": 2e-5, "units": 256, "dropout": 0.5}),
    Model("features_augmented", "features_augmented", "Listings 5.20-5.21: frozen VGG16 + head, augmentation",
          0.96, 30, True, {"batch_size": 20, "lr": 2e-5, "units": 256}),
    Model("finetuned", "finetune", "Listings 5.22-5.23: block5 fine-tuned", 0.97, 100, True,
          {"batch_size": 20, "lr": 1e-5, "unfreeze_from": "block5_conv1", "start_from": "features_augmented",
           "frozen_epochs": 0}),
)
# The training levers at the values that leave the book's training as it was
# (docs/book-schedule.md); the summary names every other value beside its model.
BOOK_LEVERS = {"precision": "float32", "early_stopping": 0, "echo": 1, "views": 0, "lr_schedule": "constant"}
TRAINING_STAGES = tuple(model.stage for model in MODELS)  # `make book`'s levers apply to these
IMAGE_MODELS = tuple(model.name for model in MODELS if model.takes_images)


def model(name):
    """The catalog entry of a model name (KeyError for an unknown one)."""
    return {entry.name: entry for entry in MODELS}[name]


# VGG16's layers (keras.applications.VGG16(include_top=False)), what finetune.unfreeze_from
# and visualize.layers may name.
VGG16_LAYERS = tuple(f"block{block}_{kind}" for block, convs in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))
                     for kind in [f"conv{i}" for i in range(1, convs + 1)] + ["pool"])
