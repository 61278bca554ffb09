"""The network: `build_unet` turns a `UNetConfig` into a Keras model, and `UNetModel`
keeps that model together with everything needed to use it again.

Only `build_unet` imports Keras (lazily, inside the function). What a network
costs (parameters, FLOP, receptive field, memory) is in `napari_unet.costs`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .config import UNetConfig
from .normalization import PercentileNormalization

if TYPE_CHECKING:  # pragma: no cover
    import keras

__all__ = ["build_unet", "unet_graph", "UNetModel"]


def build_unet(config: UNetConfig | None = None, name: str = "unet",
               precision: str | None = None) -> keras.Model:
    """Build the U-Net described by ``config`` (defaults: the classic Keras U-Net).

    Returns an uncompiled ``keras.Model`` taking ``(batch, H, W, in_channels)``
    float32 images, where H and W are any multiples of ``2**depth``, and giving
    ``(batch, H, W, 1)`` sigmoid foreground probability (``n_classes == 1``) or
    ``(batch, H, W, n_classes)`` softmax class probabilities.

    ``precision`` (default: ``config.precision``, ``"auto"`` resolved for the
    device here) sets the layers' Keras dtype policy; the weights and the
    output layer stay float32 whatever it is.

    Layer names: ``enc{k}_conv{1,2}``, ``enc{k}_pool``, ``enc{k}_drop`` for
    k = 1..depth, ``bottleneck_conv{1,2}``, then ``dec{k}_up``, ``dec{k}_concat``,
    ``dec{k}_drop``, ``dec{k}_conv{1,2}`` for k = depth..1, and ``output``.
    """
    from .keras_backend import load_keras, resolve_precision

    config = UNetConfig() if config is None else config
    if not isinstance(config, UNetConfig):
        raise ValueError(f"build_unet expects a UNetConfig or None; got {type(config).__name__}.")
    keras = load_keras()
    layers = _PolicyLayers(keras.layers, resolve_precision(precision or config.precision))

    def dropout(x, name: str, rate: float, stride: int):
        return layers.make("Dropout", name, rate)(x)

    inputs = keras.Input(shape=(None, None, config.in_channels), name="image")
    outputs = unet_graph(config, inputs, layers.make, dropout)
    return keras.Model(inputs, outputs, name=name)


def unet_graph(config: UNetConfig, x: Any, layer: Any, dropout: Any) -> Any:
    """The U-Net's layers applied to the tensor ``x``; returns the output tensor.

    ``layer(kind, name, *args, **kwargs)`` gives the layer called ``name`` (made as
    ``keras.layers.<kind>(*args, **kwargs)`` by `build_unet`, or taken from a built
    network to share its weights); ``dropout(x, name, rate, stride)`` applies the dropout
    layer ``name`` to ``x``, a feature map ``stride`` pixels per step of the input.
    """
    skips = []
    for k in range(1, config.depth + 1):
        x = _conv_block(layer, x, config, config.filters(k - 1), f"enc{k}")
        skips.append(x)
        x = layer("MaxPooling2D", f"enc{k}_pool", 2)(x)
        rate = config.dropout_first if k == 1 else config.dropout
        x = dropout(x, f"enc{k}_drop", rate, 2**k)
    x = _conv_block(layer, x, config, config.filters(config.depth), "bottleneck")
    for k in range(config.depth, 0, -1):
        x = layer("Conv2DTranspose", f"dec{k}_up", config.filters(k - 1), config.kernel_size,
                  strides=2, padding="same")(x)
        x = layer("Concatenate", f"dec{k}_concat")([x, skips[k - 1]])
        x = dropout(x, f"dec{k}_drop", config.dropout, 2 ** (k - 1))
        x = _conv_block(layer, x, config, config.filters(k - 1), f"dec{k}")
    activation = "sigmoid" if config.n_classes == 1 else "softmax"
    return layer("Conv2D", "output", config.n_classes, 1, padding="same", activation=activation,
                 dtype="float32")(x)


class _PolicyLayers:
    """Makes ``keras.layers`` under one dtype policy (mixed precision) unless a layer names
    its own ``dtype``; ``make(kind, name, ...)`` is `unet_graph`'s ``layer``."""

    def __init__(self, layers: Any, policy: str):
        self._layers, self._policy = layers, policy

    def make(self, kind: str, name: str, *args: Any, **kwargs: Any) -> Any:
        if self._policy != "float32":
            kwargs.setdefault("dtype", self._policy)
        return getattr(self._layers, kind)(*args, name=name, **kwargs)


def _conv_block(layer, x, config: UNetConfig, filters: int, prefix: str):
    """Two 'same' convolutions with ReLU (``{prefix}_conv1``, ``_conv2``), each followed by
    batch normalisation (``_bn``) before its ReLU (``_relu``) when ``config.batch_norm``."""
    for i in (1, 2):
        if config.batch_norm:
            x = layer("Conv2D", f"{prefix}_conv{i}", filters, config.kernel_size, padding="same",
                      use_bias=False)(x)
            x = layer("BatchNormalization", f"{prefix}_bn{i}")(x)
            x = layer("Activation", f"{prefix}_relu{i}", "relu")(x)
        else:
            x = layer("Conv2D", f"{prefix}_conv{i}", filters, config.kernel_size,
                      activation="relu", padding="same")(x)
    return x


@dataclass
class UNetModel:
    """A Keras U-Net together with everything needed to use it again.

    Attributes
    ----------
    keras_model : the ``keras.Model`` built by `build_unet`.
    config : its `UNetConfig`.
    normalization : how images are normalised before they reach the network.
    threshold : foreground probability above which a pixel is foreground.
    target : what the network learnt: ``"foreground"`` (one sigmoid output),
        ``"classes"`` (softmax over classes) or ``"boundary"`` (softmax over
        background / interior / boundary, decoded into instances by a seeded
        watershed); "" is filled in from ``config.n_classes``.
    seed_threshold : interior probability above which a pixel seeds an object
        (``"boundary"`` models).
    min_size : objects of fewer pixels are dropped from instance labels by default.
    split_distance : a boundary model's seeds are split where their distance
        transform peaks lie at least this many pixels apart (0 = not split).
    linked_decoding : a boundary model's values for objects linked in 3D (``threshold``,
        ``seed_threshold``, ``min_size`` in voxels, ``split_distance``), calibrated on 3D
        instance labels; empty when it had none (the values above are then used).
    class_names : one name per output class (index 0 = background).
    history : per-epoch training metrics (``loss``, ``val_loss``, ``iou`` ...).
    info : training settings and provenance (package version, best epoch, ...).
    """

    keras_model: Any
    config: UNetConfig = field(default_factory=UNetConfig)
    normalization: PercentileNormalization = field(default_factory=PercentileNormalization)
    threshold: float = 0.5
    target: str = ""
    seed_threshold: float = 0.5
    min_size: int = 0
    split_distance: int = 0
    linked_decoding: dict[str, Any] = field(default_factory=dict)
    class_names: list[str] = field(default_factory=list)
    history: dict[str, list[float]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.target:
            self.target = "foreground" if self.config.n_classes == 1 else "classes"
        wanted = {"foreground": self.config.n_classes == 1, "classes": self.config.n_classes > 1,
                  "boundary": self.config.n_classes == 3}
        if not wanted.get(self.target, False):
            raise ValueError(f"target {self.target!r} does not fit a network with n_classes="
                             f"{self.config.n_classes}; use 'foreground' (1 output), 'classes' "
                             "(2 or more) or 'boundary' (3).")
        if self.target == "boundary" and not self.class_names:
            self.class_names = ["background", "interior", "boundary"]
        if not self.class_names:
            n = max(2, self.config.n_classes)
            self.class_names = ["background"] + (
                ["foreground"] if n == 2 else [f"class {i}" for i in range(1, n)]
            )
        for name in ("threshold", "seed_threshold"):
            if not 0.0 < float(getattr(self, name)) < 1.0:
                raise ValueError(f"{name} must be between 0 and 1; got {getattr(self, name)}.")
        for name in ("min_size", "split_distance"):
            value = getattr(self, name)
            if int(value) != value or value < 0:
                raise ValueError(f"{name} must be a whole number of pixels >= 0; got {value}.")
        self._check_linked_decoding()

    def _check_linked_decoding(self) -> None:
        """``ValueError`` unless ``linked_decoding`` is empty or holds exactly the four values."""
        linked = self.linked_decoding
        keys = ["min_size", "seed_threshold", "split_distance", "threshold"]
        if not isinstance(linked, dict) or (linked and sorted(linked) != keys):
            raise ValueError(f"linked_decoding must be {{}} or a dict of {keys}; got {linked!r}.")
        if linked:
            from .postprocess import LabelOptions

            LabelOptions(**linked)  # checks each value

    @classmethod
    def new(cls, config: UNetConfig | None = None, **kwargs: Any) -> UNetModel:
        """Build a fresh, untrained U-Net for ``config``."""
        config = UNetConfig() if config is None else config
        return cls(keras_model=build_unet(config), config=config, **kwargs)

    def metadata(self) -> dict[str, Any]:
        """JSON-serialisable description stored next to the weights in a model file."""
        return {
            "format": "napari-unet",
            "format_version": 1,
            "config": self.config.to_dict(),
            "normalization": self.normalization.to_dict(),
            "threshold": float(self.threshold),
            "target": self.target,
            "seed_threshold": float(self.seed_threshold),
            "min_size": int(self.min_size),
            "split_distance": int(self.split_distance),
            "linked_decoding": dict(self.linked_decoding),
            "class_names": list(self.class_names),
            "history": {k: [float(v) for v in vals] for k, vals in self.history.items()},
            "info": self.info,
        }
