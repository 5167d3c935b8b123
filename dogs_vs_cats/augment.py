"""The book's ImageDataGenerator augmentation as one Keras layer: training images only.

Listing 5.14's `ImageDataGenerator(rotation_range=40, width_shift_range=0.2,
height_shift_range=0.2, shear_range=0.2, zoom_range=0.2, horizontal_flip=True,
fill_mode='nearest')` draws, per image and independently:

    rotation  theta  ~ U(-rotation, rotation)          degrees
    shift     tx, ty ~ U(-shift, shift) * width, height pixels
    shear     s      ~ U(-shear, shear)                 degrees (shear_range's unit since Keras 2.1.3)
    zoom      zx, zy ~ U(1 - zoom, 1 + zoom)            per axis, independently
    flip      with probability 1/2

and applies them as ONE affine transform about the image centre, resampled once
(bilinear, `fill_mode` nearest). A stack of Keras' RandomRotation, RandomTranslation,
RandomShear and RandomZoom layers differs: it resamples (and blurs) once per layer, keeps
the aspect ratio when zooming, shears about a corner, and layers given the same seed draw
the same numbers (the zoom then follows the angle). docs/book-schedule.md shows both.
"""

import math

import keras
from keras import ops


def affine_rows(theta, tx, ty, shear, zx, zy, flip, height, width):
    """ImageDataGenerator's combined transform, C . R(theta) . T(tx, ty) . Shear . Zoom . C^-1,
    then the flip, as the (batch, 8) rows keras.ops.image.affine_transform takes: output
    pixel (x, y) reads input position (a0 x + a1 y + a2, b0 x + b1 y + b2).

    Angles in radians, shifts in pixels, `flip` -1 to mirror left-right (else 1); each of
    shape (batch,). Shear = [[1, -sin s], [0, cos s]], Zoom = diag(zx, zy), C the centre.
    """
    cos_t, sin_t = ops.cos(theta), ops.sin(theta)
    a0, a1 = cos_t * zx * flip, -ops.sin(theta + shear) * zy
    b0, b1 = sin_t * zx * flip, ops.cos(theta + shear) * zy
    cx, cy = (width - 1.0) / 2.0, (height - 1.0) / 2.0
    a2 = cx + (cos_t * tx - sin_t * ty) - (a0 * cx + a1 * cy)
    b2 = cy + (sin_t * tx + cos_t * ty) - (b0 * cx + b1 * cy)
    zeros = ops.zeros_like(a0)
    return ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


@keras.saving.register_keras_serializable(package="dogs_vs_cats")
class RandomAffine(keras.layers.Layer):
    """Random rotation, shift, shear, per-axis zoom and horizontal flip, one resampling.

    Augments when called with training=True (what fit() passes), the identity otherwise.
    All draws come from one seeded generator, seven independent uniforms per image.
    """

    def __init__(self, rotation=0.0, width_shift=0.0, height_shift=0.0, shear=0.0, zoom=0.0,
                 horizontal_flip=False, fill_mode="nearest", seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rotation, self.width_shift, self.height_shift = float(rotation), float(width_shift), float(height_shift)
        self.shear, self.zoom, self.horizontal_flip = float(shear), float(zoom), bool(horizontal_flip)
        self.fill_mode, self.seed = fill_mode, seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_jit = False  # as Keras' own affine preprocessing layers

    def transform_rows(self, batch_size, height, width):
        u = keras.random.uniform((batch_size, 7), seed=self.seed_generator, dtype="float32")

        def symmetric(column, limit):
            return (2.0 * u[:, column] - 1.0) * limit

        degree = math.pi / 180.0
        flip = ops.where(u[:, 6] < 0.5, -1.0, 1.0) if self.horizontal_flip else ops.ones_like(u[:, 6])
        return affine_rows(symmetric(0, self.rotation * degree), symmetric(1, self.width_shift * width),
                           symmetric(2, self.height_shift * height), symmetric(3, self.shear * degree),
                           1.0 + symmetric(4, self.zoom), 1.0 + symmetric(5, self.zoom), flip, height, width)

    def call(self, inputs, training=True):
        images = ops.cast(inputs, self.compute_dtype)
        if not training:
            return images
        shape = ops.shape(images)
        rows = self.transform_rows(shape[0], ops.cast(shape[1], "float32"), ops.cast(shape[2], "float32"))
        outputs = ops.image.affine_transform(images, rows, interpolation="bilinear", fill_mode=self.fill_mode)
        return ops.cast(outputs, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rotation": self.rotation, "width_shift": self.width_shift,
                "height_shift": self.height_shift, "shear": self.shear, "zoom": self.zoom,
                "horizontal_flip": self.horizontal_flip, "fill_mode": self.fill_mode, "seed": self.seed}


def augmentation(params, seed=None):
    """The `augment` params section (typed, or a mapping of some of its keys: a missing one
    is off) as the RandomAffine layer training runs images through."""
    params = dict(params)
    return RandomAffine(rotation=params.get("rotation", 0), width_shift=params.get("width_shift", 0),
                        height_shift=params.get("height_shift", 0), shear=params.get("shear", 0),
                        zoom=params.get("zoom", 0), horizontal_flip=params.get("horizontal_flip", False),
                        seed=seed, name="augmentation")
