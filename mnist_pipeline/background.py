"""Inputs brought to MNIST's black background and full contrast, inside the model (so
`predict`, `serve` and the exported copies all do it), in training and at inference.

MNIST's digits are white ink on pure black, the brightest ink near white. Scans and
photos are not: a gray or uneven background (the paper's shade, uneven light, haze), or
faint ink. Two layers undo that, each a param of the model:

- `RemoveBackground(window)`: subtracts what a gray-scale opening over a window of that
  many pixels leaves: everything broader than the window (the background), keeping the
  strokes, which are narrower (a white top-hat). On MNIST's own digits the opening is
  black, so they pass unchanged.
- `StretchContrast()`: each image's darkest pixel made black and its brightest white.
  MNIST's digits nearly all span 0 to 255 already.

Written with `keras.ops` only, so they run on every backend and export to ONNX.
"""

from __future__ import annotations

from mnist_pipeline.backend import import_keras

keras = import_keras()  # on the backend the stage chose
ops = keras.ops

FLAT = 1e-3  # an image whose pixels span less than this is left as it is (blank)


@keras.saving.register_keras_serializable(package="mnist_pipeline")
class RemoveBackground(keras.layers.Layer):
    """The image minus its gray-scale opening over `window` x `window` pixels."""

    def __init__(self, window: int, **kwargs: object) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.window = int(window)

    def call(self, images):
        eroded = -ops.max_pool(-images, self.window, strides=1, padding="same")
        opened = ops.max_pool(eroded, self.window, strides=1, padding="same")
        return images - opened

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "window": self.window}


@keras.saving.register_keras_serializable(package="mnist_pipeline")
class StretchContrast(keras.layers.Layer):
    """Each image mapped linearly so its darkest pixel is 0 and its brightest 1."""

    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, images):
        darkest = ops.min(images, axis=(1, 2, 3), keepdims=True)
        brightest = ops.max(images, axis=(1, 2, 3), keepdims=True)
        span = brightest - darkest
        return ops.where(span < FLAT, images, (images - darkest) / ops.maximum(span, FLAT))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape
