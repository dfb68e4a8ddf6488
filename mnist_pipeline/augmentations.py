"""What pens, hands and scanners do to a digit, as Keras layers that change each training
image at random: an elastic distortion, a thinner or bolder stroke, a blur, noise, and an
erased patch.

Each layer works on the scaled image (floats in [0, 1], white ink on black), draws its
randomness from its own seeded `SeedGenerator` (whose state is a model variable, so a
resumed run continues the same stream, and the JAX path runs it on the device), and
passes images through untouched outside training. Each changes a share of the images
(`model.augment.chance`; erasing has its own), each by a strength drawn per image,
uniformly from 0 to the layer's maximum.

Written with `keras.ops` only, so they run on every backend.
"""

from __future__ import annotations

import math

from mnist_pipeline.backend import import_keras

keras = import_keras()  # on the backend the stage chose
ops = keras.ops

ELASTIC_SMOOTHING = 4.0  # pixels: the Gaussian that smooths the random field (Simard's)
BLUR_RADIUS = 3  # pixels each side: the blur kernel is 7 wide (enough for sigma <= 1.5)
ERASED_AREA = (0.02, 0.2)  # the erased patch's share of the image, at least and at most
ERASED_ASPECT = (0.3, 3.3)  # its height / width, at least and at most


class _RandomLayer(keras.layers.Layer):
    """A layer that draws its randomness from a seeded generator, in training only, and
    changes each image with probability `chance` (the rest pass as they are). It computes
    in float32 whatever the precision policy (its inputs are cast to it)."""

    def __init__(
        self, strength: float, chance: float = 1.0, seed: int | None = None, **kwargs: object
    ) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.strength, self.chance, self.seed = float(strength), float(chance), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training: bool = False):
        if not training:
            return images
        changed = self.change(images)
        if self.chance >= 1:
            return changed
        return ops.where(self.uniform(images) < self.chance, changed, images)

    def change(self, images):
        raise NotImplementedError

    def uniform(self, images, low: float = 0.0, high: float = 1.0):
        """One number per image, uniform in [low, high), shaped to broadcast over it."""
        shape = (ops.shape(images)[0], 1, 1, 1)
        return keras.random.uniform(shape, low, high, seed=self.seed_generator)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "strength": self.strength,
            "chance": self.chance,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package="mnist_pipeline")
class RandomElastic(_RandomLayer):
    """Simard's elastic distortion: each pixel moves along a smooth random field (white
    noise smoothed by a Gaussian of ELASTIC_SMOOTHING pixels), scaled so that the field's
    root mean square is up to `strength` pixels."""

    def change(self, images):
        batch, height, width = ops.shape(images)[0], images.shape[1], images.shape[2]
        noise = keras.random.uniform((batch, height, width, 2), -1, 1, seed=self.seed_generator)
        field = _gaussian_blur(noise, ELASTIC_SMOOTHING, radius=2 * int(ELASTIC_SMOOTHING))
        rms = ops.sqrt(ops.mean(ops.square(field), axis=(1, 2, 3), keepdims=True) + 1e-12)
        field = field / rms * self.uniform(images, 0.0, self.strength)
        rows = ops.arange(height, dtype="float32")[None, :, None, None] + field[..., :1]
        cols = ops.arange(width, dtype="float32")[None, None, :, None] + field[..., 1:]
        return _bilinear(images, rows, cols)


@keras.saving.register_keras_serializable(package="mnist_pipeline")
class RandomStrokeWidth(_RandomLayer):
    """Strokes made thinner or bolder by up to `strength` pixels each side: a gray-scale
    erosion or dilation (3x3), blended with the image by a random share; `strength`
    above 1 repeats it."""

    def change(self, images):
        amount = self.uniform(images, -self.strength, self.strength)
        changed = images
        for step in range(math.ceil(self.strength)):
            part = ops.clip(ops.abs(amount) - step, 0.0, 1.0)
            dilated = ops.max_pool(changed, 3, strides=1, padding="same")
            eroded = -ops.max_pool(-changed, 3, strides=1, padding="same")
            target = ops.where(amount > 0, dilated, eroded)
            changed = changed + part * (target - changed)
        return changed


@keras.saving.register_keras_serializable(package="mnist_pipeline")
class RandomBlur(_RandomLayer):
    """A Gaussian blur of a random sigma, up to `strength` pixels."""

    def change(self, images):
        sigma = self.uniform(images, 0.0, self.strength)
        return _gaussian_blur(images, sigma, radius=BLUR_RADIUS)


@keras.saving.register_keras_serializable(package="mnist_pipeline")
class RandomNoise(_RandomLayer):
    """Gaussian noise of a random standard deviation, up to `strength` (a share of white),
    kept within black and white."""

    def change(self, images):
        stddev = self.uniform(images, 0.0, self.strength)
        noise = keras.random.normal(ops.shape(images), seed=self.seed_generator)
        return ops.clip(images + ops.cast(noise, images.dtype) * stddev, 0.0, 1.0)


@keras.saving.register_keras_serializable(package="mnist_pipeline")
class RandomErasing(_RandomLayer):
    """With probability `strength`, a random rectangle (ERASED_AREA of the image,
    ERASED_ASPECT high / wide) set to the background: a gap in the stroke."""

    def change(self, images):
        height, width = images.shape[1], images.shape[2]
        area = self.uniform(images, *ERASED_AREA) * height * width
        aspect = ops.exp(self.uniform(images, *(math.log(a) for a in ERASED_ASPECT)))
        box_height = ops.minimum(ops.sqrt(area * aspect), height)
        box_width = ops.minimum(ops.sqrt(area / aspect), width)
        top = self.uniform(images) * (height - box_height)
        left = self.uniform(images) * (width - box_width)
        erased = self.uniform(images) < self.strength
        rows = ops.arange(height, dtype="float32")[None, :, None, None]
        cols = ops.arange(width, dtype="float32")[None, None, :, None]
        inside = (rows >= top) & (rows < top + box_height) & (cols >= left)
        inside = inside & (cols < left + box_width) & erased
        return ops.where(inside, ops.zeros_like(images), images)


def _gaussian_blur(images, sigma, radius: int):
    """`images` (N, H, W, C) blurred by a Gaussian of `sigma` pixels (a number, or one per
    image shaped (N, 1, 1, 1)), `radius` pixels each side, the edges padded with 0:
    separable, as weighted sums of shifted copies."""
    offsets = ops.arange(-radius, radius + 1, dtype="float32")
    sigma = ops.maximum(ops.cast(sigma, "float32"), 1e-3)
    weights = ops.exp(-0.5 * ops.square(offsets / ops.expand_dims(sigma, -1)))
    weights = weights / ops.sum(weights, axis=-1, keepdims=True)  # (N, 1, 1, 1, 2r+1)
    weights = ops.cast(weights, images.dtype)
    padded = ops.pad(images, ((0, 0), (radius, radius), (0, 0), (0, 0)))
    height, width = images.shape[1], images.shape[2]
    images = sum(padded[:, i : i + height] * weights[..., i] for i in range(2 * radius + 1))
    padded = ops.pad(images, ((0, 0), (0, 0), (radius, radius), (0, 0)))
    return sum(padded[:, :, i : i + width] * weights[..., i] for i in range(2 * radius + 1))


def _bilinear(images, rows, cols):
    """`images` (N, H, W, 1) sampled at (`rows`, `cols`), each shaped like them: the four
    neighbours of each point weighted by their nearness, black outside the image."""
    height, width = images.shape[1], images.shape[2]
    flat = ops.reshape(images, (-1,))
    base = ops.arange(ops.shape(images)[0], dtype="int32")[:, None, None, None] * height * width
    top, left = ops.floor(rows), ops.floor(cols)
    sampled = ops.zeros_like(images)
    for row, row_weight in ((top, 1 - (rows - top)), (top + 1, rows - top)):
        for col, col_weight in ((left, 1 - (cols - left)), (left + 1, cols - left)):
            inside = (row >= 0) & (row <= height - 1) & (col >= 0) & (col <= width - 1)
            index = base + ops.cast(ops.clip(row, 0, height - 1), "int32") * width
            index = index + ops.cast(ops.clip(col, 0, width - 1), "int32")
            value = ops.take(flat, ops.reshape(index, (-1,)))
            weight = ops.where(inside, row_weight * col_weight, 0.0)
            sampled = sampled + ops.reshape(value, ops.shape(images)) * weight
    return sampled
