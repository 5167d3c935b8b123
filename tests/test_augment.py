"""The augmentation layer does what ImageDataGenerator does: one affine transform per image,
with independent draws, about the centre."""

import math

import numpy as np

from dogs_vs_cats.augment import affine_rows, augmentation, RandomAffine

AUGMENT = {"rotation": 40, "width_shift": 0.2, "height_shift": 0.2, "shear": 0.2, "zoom": 0.2,
           "horizontal_flip": True}


def one(value):
    return np.asarray([value], dtype="float32")


def apply(rows, image):
    import keras
    return keras.ops.convert_to_numpy(keras.ops.image.affine_transform(
        image[None].astype("float32"), rows, interpolation="bilinear", fill_mode="constant"))[0]


def test_training_batches_change_and_inference_is_the_identity():
    images = np.random.default_rng(1).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    layer = augmentation(AUGMENT, seed=1)
    assert not np.allclose(layer(images, training=True), images)
    np.testing.assert_array_equal(layer(images, training=False), images)
    again = augmentation(AUGMENT, seed=1)
    np.testing.assert_array_equal(layer.__class__(**AUGMENT, seed=1)(images), again(images))  # seeded


def test_a_quarter_turn_and_a_shift_move_pixels_where_imagedatagenerator_does():
    image = np.zeros((9, 9, 1), dtype="float32")
    image[1, 4] = 1.0  # row 1, column 4: above the centre (4, 4)
    quarter = affine_rows(one(math.pi / 2), one(0), one(0), one(0), one(1), one(1), one(1), 9.0, 9.0)
    turned = apply(quarter, image)
    assert np.unravel_index(turned.argmax(), turned.shape)[:2] in {(4, 1), (4, 7)}  # about the centre
    shifted = apply(affine_rows(one(0), one(2), one(0), one(0), one(1), one(1), one(1), 9.0, 9.0), image)
    assert np.unravel_index(shifted.argmax(), shifted.shape)[:2] == (1, 2)  # reads 2 px to the right
    mirrored = apply(affine_rows(one(0), one(0), one(0), one(0), one(1), one(1), one(-1), 9.0, 9.0), image)
    np.testing.assert_allclose(mirrored, image[:, ::-1])  # (4 is the middle column: mirror of itself)


def test_each_image_draws_its_own_angle_and_independent_zooms_per_axis():
    # Keras' stacked layers with one seed drew the zoom from the angle (zoom = 1 + angle/200).
    layer = RandomAffine(rotation=40, zoom=0.2, seed=3)
    rows = np.asarray(layer.transform_rows(2048, 150.0, 150.0))
    a0, a1, b0, b1 = rows[:, 0], rows[:, 1], rows[:, 3], rows[:, 4]
    zx, zy, theta = np.hypot(a0, b0), np.hypot(a1, b1), np.degrees(np.arctan2(b0, a0))
    assert abs(np.corrcoef(theta, zx)[0, 1]) < 0.1 and abs(np.corrcoef(zx, zy)[0, 1]) < 0.1
    assert 39 < np.abs(theta).max() <= 40 and 0.8 <= zx.min() < 0.81 and 1.19 < zx.max() <= 1.2
    assert np.abs(zx - zy).mean() > 0.1  # the aspect ratio changes, as zoom_range does


def test_shear_is_an_angle_in_degrees():
    layer = RandomAffine(shear=30, seed=0)
    rows = np.asarray(layer.transform_rows(512, 150.0, 150.0))
    shear = np.degrees(np.arcsin(-rows[:, 1]))  # a1 = -sin(shear) with no rotation or zoom
    assert 29 < np.abs(shear).max() <= 30.01
