"""Build the U-Net and compute its size, cost and receptive field from a config.

Only `build_unet` imports Keras (lazily, inside the function); the analytic
helpers (`count_parameters`, `flops_per_megapixel`, `receptive_field`, `halo`,
`training_memory_bytes`) are plain arithmetic on a `UNetConfig`, so a widget can
show them without loading TensorFlow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .config import UNetConfig
from .data import PercentileNormalization

if TYPE_CHECKING:  # pragma: no cover
    import keras

__all__ = [
    "build_unet",
    "count_parameters",
    "flops_per_megapixel",
    "receptive_field",
    "halo",
    "training_memory_bytes",
    "UNetModel",
]


def build_unet(config: UNetConfig | None = None, name: str = "unet") -> keras.Model:
    """Build the U-Net described by ``config`` (defaults: the classic Keras U-Net).

    Returns an uncompiled ``keras.Model`` taking ``(batch, H, W, in_channels)``
    float32 images, where H and W are any multiples of ``2**depth``, and giving
    ``(batch, H, W, 1)`` sigmoid foreground probability (``n_classes == 1``) or
    ``(batch, H, W, n_classes)`` softmax class probabilities.

    Layer names: ``enc{k}_conv{1,2}``, ``enc{k}_pool``, ``enc{k}_drop`` for
    k = 1..depth, ``bottleneck_conv{1,2}``, then ``dec{k}_up``, ``dec{k}_concat``,
    ``dec{k}_drop``, ``dec{k}_conv{1,2}`` for k = depth..1, and ``output``.
    """
    from .devices import load_keras

    config = UNetConfig() if config is None else config
    if not isinstance(config, UNetConfig):
        raise ValueError(f"build_unet expects a UNetConfig or None; got {type(config).__name__}.")
    keras = load_keras()
    layers = keras.layers
    ks = config.kernel_size

    def conv_block(x, filters: int, prefix: str):
        for i in (1, 2):
            if config.batch_norm:
                x = layers.Conv2D(
                    filters, ks, padding="same", use_bias=False, name=f"{prefix}_conv{i}"
                )(x)
                x = layers.BatchNormalization(name=f"{prefix}_bn{i}")(x)
                x = layers.Activation("relu", name=f"{prefix}_relu{i}")(x)
            else:
                x = layers.Conv2D(
                    filters, ks, activation="relu", padding="same", name=f"{prefix}_conv{i}"
                )(x)
        return x

    inputs = keras.Input(shape=(None, None, config.in_channels), name="image")
    x = inputs
    skips = []
    for k in range(1, config.depth + 1):
        x = conv_block(x, config.filters(k - 1), f"enc{k}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"enc{k}_pool")(x)
        rate = config.dropout_first if k == 1 else config.dropout
        x = layers.Dropout(rate, name=f"enc{k}_drop")(x)

    x = conv_block(x, config.filters(config.depth), "bottleneck")

    for k in range(config.depth, 0, -1):
        x = layers.Conv2DTranspose(
            config.filters(k - 1), ks, strides=2, padding="same", name=f"dec{k}_up"
        )(x)
        x = layers.Concatenate(name=f"dec{k}_concat")([x, skips[k - 1]])
        x = layers.Dropout(config.dropout, name=f"dec{k}_drop")(x)
        x = conv_block(x, config.filters(k - 1), f"dec{k}")

    if config.n_classes == 1:
        outputs = layers.Conv2D(1, 1, padding="same", activation="sigmoid", name="output")(x)
    else:
        outputs = layers.Conv2D(
            config.n_classes, 1, padding="same", activation="softmax", name="output"
        )(x)
    return keras.Model(inputs, outputs, name=name)


def _conv_params(k: int, c_in: int, c_out: int, bias: bool = True) -> int:
    return k * k * c_in * c_out + (c_out if bias else 0)


def count_parameters(config: UNetConfig) -> int:
    """Number of weights (trainable and BatchNorm statistics) of ``build_unet(config)``."""
    ks, bn = config.kernel_size, config.batch_norm

    def block(c_in: int, c_out: int) -> int:
        n = _conv_params(ks, c_in, c_out, not bn) + _conv_params(ks, c_out, c_out, not bn)
        return n + (2 * 4 * c_out if bn else 0)  # gamma, beta, moving mean, moving var

    total, c_in = 0, config.in_channels
    for level in range(config.depth):
        total += block(c_in, config.filters(level))
        c_in = config.filters(level)
    total += block(c_in, config.filters(config.depth))
    for level in range(config.depth - 1, -1, -1):
        c = config.filters(level)
        total += _conv_params(ks, config.filters(level + 1), c)  # Conv2DTranspose
        total += block(2 * c, c)
    total += _conv_params(1, config.filters(0), config.n_classes)
    return total


def flops_per_megapixel(config: UNetConfig) -> float:
    """Floating-point operations (2 per multiply-add) of one forward pass per 10**6 input pixels."""
    k2 = config.kernel_size**2
    macs, c_in = 0.0, config.in_channels
    for level in range(config.depth + 1):  # encoder levels and bottleneck
        c, area = config.filters(level), 4.0**-level
        macs += area * k2 * (c_in * c + c * c)
        c_in = c
    for level in range(config.depth - 1, -1, -1):
        c, area = config.filters(level), 4.0**-level
        macs += (area / 4) * k2 * config.filters(level + 1) * c  # transposed conv, per input pixel
        macs += area * k2 * (2 * c * c + c * c)
    macs += config.filters(0) * config.n_classes
    return 2 * macs * 1e6


def _one_side_extent(config: UNetConfig) -> tuple[int, int]:
    """(total span - 1, largest one-sided reach) of an output pixel, in input pixels."""
    r = (config.kernel_size - 1) // 2
    t = math.ceil(config.kernel_size / 2) - 1  # extra coarse pixels a stride-2 transposed conv reads
    span = side = 0
    for level in range(config.depth):
        scale = 2**level
        span += 2 * (2 * r * scale) + scale  # two encoder convs + 2x2 pooling
        side += 2 * r * scale + scale
    scale = 2**config.depth
    span += 2 * 2 * r * scale
    side += 2 * r * scale
    for level in range(config.depth - 1, -1, -1):
        scale = 2**level
        span += 2 * t * scale + 2 * (2 * r * scale)  # transposed conv + two decoder convs
        side += 2 * t * scale + 2 * r * scale
    return span, side


def receptive_field(config: UNetConfig) -> int:
    """Width in input pixels of the window that can influence one output pixel.

    Computed layer by layer: a k x k convolution at level l widens it by
    (k - 1) * 2**l, a 2x2 pooling by 2**l and a stride-2 transposed convolution
    by (ceil(k/2) - 1) * 2**(l + 1). The default U-Net gives 230 px.
    """
    span, _ = _one_side_extent(config)
    return span + 1


def halo(config: UNetConfig) -> int:
    """Context in pixels to add on each side of a tile so its centre is exact.

    The largest one-sided reach of the receptive field (pooling and transposed
    convolutions are not centred, so this is more than half the field), rounded
    up to a multiple of ``2**depth`` so tile origins stay on the pooling grid.
    """
    _, side = _one_side_extent(config)
    m = config.size_multiple
    return int(math.ceil(side / m) * m)


def training_memory_bytes(config: UNetConfig, patch_size: int, batch_size: int) -> int:
    """Rough memory needed to train on ``batch_size`` patches of ``patch_size**2`` pixels.

    Counts float32 activations kept for the backward pass (each layer output,
    about twice for gradients) plus weights, gradients and the two Adam moments.
    An estimate for choosing patch and batch size, not a guarantee.
    """
    px = batch_size * patch_size * patch_size
    act = 0.0
    for level in range(config.depth + 1):
        c, area = config.filters(level), 4.0**-level
        per_conv = 3 if config.batch_norm else 1
        act += area * c * (2 * per_conv + 1)  # two convs (+BN/ReLU), pool/dropout output
    for level in range(config.depth):
        c, area = config.filters(level), 4.0**-level
        act += area * c * (1 + 2 + 2 + 2 * (3 if config.batch_norm else 1))
    act += config.in_channels + 2 * config.n_classes
    activations = 4 * px * act * 2
    weights = 4 * count_parameters(config) * 4
    return int(activations + weights)


@dataclass
class UNetModel:
    """A Keras U-Net together with everything needed to use it again.

    Attributes
    ----------
    keras_model : the ``keras.Model`` built by `build_unet`.
    config : its `UNetConfig`.
    normalization : how images are normalised before they reach the network.
    threshold : foreground probability above which a pixel is foreground.
    class_names : one name per output class (index 0 = background).
    history : per-epoch training metrics (``loss``, ``val_loss``, ``iou`` ...).
    info : training settings and provenance (package version, best epoch, ...).
    """

    keras_model: Any
    config: UNetConfig = field(default_factory=UNetConfig)
    normalization: PercentileNormalization = field(default_factory=PercentileNormalization)
    threshold: float = 0.5
    class_names: list[str] = field(default_factory=list)
    history: dict[str, list[float]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.class_names:
            n = max(2, self.config.n_classes)
            self.class_names = ["background"] + (
                ["foreground"] if n == 2 else [f"class {i}" for i in range(1, n)]
            )
        if not 0.0 < float(self.threshold) < 1.0:
            raise ValueError(f"threshold must be between 0 and 1; got {self.threshold}.")

    @classmethod
    def new(cls, config: UNetConfig | None = None, **kwargs: Any) -> UNetModel:
        """Build a fresh, untrained U-Net for ``config``."""
        config = UNetConfig() if config is None else config
        return cls(keras_model=build_unet(config), config=config, **kwargs)

    @property
    def halo(self) -> int:
        return halo(self.config)

    def metadata(self) -> dict[str, Any]:
        """JSON-serialisable description stored next to the weights in a model file."""
        return {
            "format": "napari-unet",
            "format_version": 1,
            "config": self.config.to_dict(),
            "normalization": self.normalization.to_dict(),
            "threshold": float(self.threshold),
            "class_names": list(self.class_names),
            "history": {k: [float(v) for v in vals] for k, vals in self.history.items()},
            "info": self.info,
        }
