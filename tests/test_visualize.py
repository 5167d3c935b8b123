import keras
import numpy as np
import pytest

from dogs_vs_cats.summary import smooth
from dogs_vs_cats.visualize import grad_cam, normalise


def listing_5_24(points, factor=0.8):
    """The book's smooth_curve, verbatim in spirit."""
    smoothed_points = []
    for point in points:
        if smoothed_points:
            previous = smoothed_points[-1]
            smoothed_points.append(previous * factor + point * (1 - factor))
        else:
            smoothed_points.append(point)
    return smoothed_points


def test_smoothing_matches_listing_5_24():
    series = [0.5, 0.9, 0.1, 0.7, 0.7, 1.0]
    assert smooth(series) == pytest.approx(listing_5_24(series))
    assert smooth(series, 0.5)[:3] == pytest.approx([0.5, 0.7, 0.4])
    assert smooth(series, 0.0) == series
    assert smooth([]) == []


def test_grad_cam_heatmap_has_the_input_size_values_in_0_1_and_structure():
    keras.utils.set_random_seed(0)
    features = keras.Sequential([keras.Input((40, 40, 3)), keras.layers.Conv2D(8, 3, activation="relu"),
                                 keras.layers.MaxPooling2D(2), keras.layers.Conv2D(16, 3, activation="relu")])
    classifier = keras.Sequential([keras.Input(features.output_shape[1:]), keras.layers.GlobalAveragePooling2D(),
                                   keras.layers.Dense(1, activation="sigmoid")])
    images = np.zeros((2, 40, 40, 3), dtype=np.float32)
    images[:, 5:20, 8:30] = 1.0  # a bright patch: the maps cannot all be equal
    images[1] = np.random.default_rng(1).uniform(0, 1, (40, 40, 3))
    heatmaps = grad_cam(features, classifier, images)
    assert heatmaps.shape == (2, 40, 40)
    assert heatmaps.min() >= 0 and heatmaps.max() <= 1
    for heatmap in heatmaps:
        assert heatmap.max() == pytest.approx(1.0) and heatmap.std() > 0.01


def test_normalise_constant_is_zero():
    assert not normalise(np.full((3, 3), 7.0)).any()
    assert normalise(np.array([1.0, 3.0])).tolist() == [0.0, 1.0]


def test_grad_cam_finds_the_region_a_confident_model_looks_at_for_either_class():
    # The model sees only the top-left 8x8 pixels: red there is a dog, green a cat, with a
    # logit of about +-30: the dog's probability is exactly 1 in float32, its gradient 0.
    features = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.AveragePooling2D(4)])  # 8x8x3 maps
    classifier = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                                   keras.layers.Dense(1, activation="sigmoid")])
    kernel = np.zeros((8, 8, 3, 1), np.float32)
    kernel[:2, :2, 0], kernel[:2, :2, 1] = 0.03, -0.03
    classifier.layers[-1].set_weights([kernel.reshape(-1, 1), np.zeros(1)])
    images = np.zeros((2, 32, 32, 3), np.float32)
    images[0, :8, :8, 0] = 255  # dog
    images[1, :8, :8, 1] = 255  # cat
    images[:, 20:, 20:] = 255  # a bright white patch the model ignores
    p_dog = classifier.predict(features.predict(images, verbose=0), verbose=0).ravel()
    assert p_dog[0] == 1.0 and p_dog[1] < 1e-10
    for heatmap in grad_cam(features, classifier, images):
        assert heatmap[:6, :6].mean() > 0.8 and heatmap[16:, 16:].max() < 0.1
