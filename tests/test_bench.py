"""The benchmarks' own arithmetic (their timings are figures, not tests)."""

import re
from functools import partial

import keras
import numpy as np
from pytest import approx
from ruamel.yaml import YAML

from bench import augmentation, book_schedule, features, scratch_epoch
from dogs_vs_cats import augment
from dogs_vs_cats.nets import conv_base
from tests.workspace import compose, REPO


def test_vgg16_flop_count_matches_the_keras_model():
    for size in (32, 150, 224):
        convolutions = [layer for layer in conv_base("none", size).layers if isinstance(layer, keras.layers.Conv2D)]
        flops = sum(2 * layer.output.shape[1] * layer.output.shape[2] * int(layer.kernel.numpy().size)
                    for layer in convolutions)
        assert len(convolutions) == 13 and features.vgg16_conv_flops(size) == flops
    assert round(features.vgg16_conv_flops(224) / 1e9, 1) == 30.7  # VGG16's 15.3 G multiply-adds


def test_scratch_epoch_bench_times_both_augmentations_and_the_training_step():
    figures = scratch_epoch.measure(batches=1, size=48, batch_size=4)
    names = {"augmentation: RandomAffine", "augmentation: Keras layer stack", "convnet training step, float32",
             "convnet training step, auto", "VGG16 conv base forward, float32", "VGG16 conv base forward, auto"}
    assert names < set(figures) and all(figures[name] > 0 for name in names)
    assert figures["precision auto runs as"] in {"float32", "bfloat16", "mixed_float16"}


def test_book_schedule_measures_make_book_fast_levers_on_the_book_params(tmp_path):
    levers = book_schedule.fast_levers()
    fast = YAML(typ="safe", pure=True).load(compose(tmp_path / "fast.yaml", ["schedule=book", "levers=fast"]))
    assert {section: {key: fast[section][key] for key in values} for section, values in levers.items()} == levers
    assert levers["finetune"]["echo"] == 1 and levers["finetune"]["lr_schedule"] == "cosine"
    assert "configuration" not in levers
    book_schedule.book_params(tmp_path / "params.yaml", {"base": {"weights": "w.h5"}})
    plain = YAML(typ="safe", pure=True).load((tmp_path / "params.yaml").read_text())
    assert (plain["split"]["train"], plain["finetune"]["epochs"], plain["finetune"]["echo"]) == (1000, 100, 1)
    assert plain["base"]["weights"] == "w.h5"


def test_book_schedule_projects_a_pool_of_views_as_fresh_passes_then_drawn_epochs():
    projection = book_schedule.projection
    # 10 s outside the epochs, a first epoch of 60 s, then 2 s an epoch.
    assert projection(10 + 60 + 2, 60, 2, epochs=2, planned=30) == 10 + 60 + 29 * 2
    assert projection(10 + 60 + 2, 60, 2, epochs=2, planned=30, views=8) == 10 + 8 * 60 + 22 * 2
    assert projection(10 + 60 + 2, 60, 2, epochs=2, planned=5, views=8) == 10 + 5 * 60  # every epoch a fresh pass


def test_augmentation_bench_arithmetic_on_known_images():
    board = np.repeat((np.indices((8, 8)).sum(axis=0) % 2 * 200.0)[None, ..., None], 3, axis=-1)  # (1, 8, 8, 3)
    flat = augmentation.change(board, np.full_like(board, 100.0))
    inverted = augmentation.change(board, 200.0 - board)
    assert flat["pixel"] == approx([100.0]) and flat["blur"] == approx([0.0])
    assert inverted["pixel"] == approx([200.0]) and inverted["blur"] == approx([1.0])
    assert augmentation.summary(np.array([1.0, 3.0])) == approx((2.0, 1.0))
    assert augmentation.idg_kwargs({"width_shift": 0.2})["height_shift_range"] == 0.2  # tf_keras' axes are swapped
    assert [layer.seed for layer in augmentation.keras_layer_stack(augmentation.BOOK).layers] == [42] * 5
    photos = augmentation.synthetic_photos(2, size=24)

    def ours(params):
        return partial(augment.augmentation(params, seed=1), training=True)
    rows, tiles = augmentation.table_rows(ours, photos, 2)
    assert list(rows) == list(augmentation.TRANSFORMS) and tiles.shape == (2, 24, 24, 3)
    assert rows["all"]["pixel"][0] > 0 and 0 < rows["all"]["blur"][0] < 2


def test_benches_are_users_of_the_library_run_as_modules():
    """`python -m bench.<name>` from the checkout: no sys.path edits, nothing from tests/."""
    for path in sorted([*(REPO / "bench").glob("*.py"), *(REPO / "dogs_vs_cats").glob("*.py")]):
        text = path.read_text()
        assert "sys.path" not in text and not re.search(r"^\s*(from|import) tests\b", text, re.M), path.name
