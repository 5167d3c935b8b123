import keras
import numpy as np
import pytest

from stages.curves import smooth
from stages.visualize import grad_cam, normalise


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
