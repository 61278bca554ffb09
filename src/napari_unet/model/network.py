"""The network: `build_unet` turns a `UNetConfig` into a Keras model, its layers made in
a loop and named by level (``enc1_conv1`` ... ``output``); `unet_graph` applies the same
layers to any tensor (the Monte-Carlo dropout network shares them).

Only `build_unet` imports Keras (lazily, inside the function). What a network
costs (parameters, FLOP, receptive field, memory) is in `napari_unet.model.costs`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import UNetConfig

if TYPE_CHECKING:  # pragma: no cover
    import keras

__all__ = ["build_unet", "unet_graph"]


def build_unet(config: UNetConfig | None = None, name: str = "unet",
               precision: str | None = None) -> keras.Model:
    """Build the U-Net described by ``config`` (defaults: the classic Keras U-Net).

    Returns an uncompiled ``keras.Model`` taking ``(batch, H, W, in_channels)``
    float32 images, where H and W are any multiples of ``2**depth``, and giving
    ``(batch, H, W, 1)`` sigmoid foreground probability (``n_classes == 1``) or
    ``(batch, H, W, n_classes)`` softmax class probabilities. With ``config.ndim == 3``
    it takes and gives ``(batch, D, H, W, channels)`` volumes, D a multiple of
    ``config.size_multiples[0]``.

    ``precision`` (default: ``config.precision``, ``"auto"`` resolved for the
    device here) sets the layers' Keras dtype policy; the weights and the
    output layer stay float32 whatever it is.

    Layer names: ``enc{k}_conv{1,2}``, ``enc{k}_pool``, ``enc{k}_drop`` for
    k = 1..depth, ``bottleneck_conv{1,2}``, then ``dec{k}_up``, ``dec{k}_concat``,
    ``dec{k}_drop``, ``dec{k}_conv{1,2}`` for k = depth..1, and ``output``.
    """
    from ..backend.devices import resolve_precision
    from ..backend.runtime import load_keras

    config = UNetConfig() if config is None else config
    if not isinstance(config, UNetConfig):
        raise ValueError(f"build_unet expects a UNetConfig or None; got {type(config).__name__}.")
    keras = load_keras()
    layers = _PolicyLayers(keras.layers, resolve_precision(precision or config.precision))

    def dropout(x, name: str, rate: float, stride: int):
        return layers.make("Dropout", name, rate)(x)

    inputs = keras.Input(shape=(None,) * config.ndim + (config.in_channels,), name="image")
    outputs = unet_graph(config, inputs, layers.make, dropout)
    return keras.Model(inputs, outputs, name=name)


def unet_graph(config: UNetConfig, x: Any, layer: Any, dropout: Any) -> Any:
    """The U-Net's layers applied to the tensor ``x``; returns the output tensor.

    ``layer(kind, name, *args, **kwargs)`` gives the layer called ``name`` (made as
    ``keras.layers.<kind>(*args, **kwargs)`` by `build_unet`, or taken from a built
    network to share its weights); ``dropout(x, name, rate, stride)`` applies the dropout
    layer ``name`` to ``x``, a feature map ``stride`` pixels per step of the input.
    """
    d = f"{config.ndim}D"
    skips = []
    for k in range(1, config.depth + 1):
        x = _conv_block(layer, x, config, k - 1, f"enc{k}")
        skips.append(x)
        x = layer(f"MaxPooling{d}", f"enc{k}_pool", config.pool(k - 1))(x)
        rate = config.dropout_first if k == 1 else config.dropout
        x = dropout(x, f"enc{k}_drop", rate, 2**k)
    x = _conv_block(layer, x, config, config.depth, "bottleneck")
    for k in range(config.depth, 0, -1):
        x = layer(f"Conv{d}Transpose", f"dec{k}_up", config.filters(k - 1), config.kernel(k - 1),
                  strides=config.pool(k - 1), padding="same")(x)
        x = layer("Concatenate", f"dec{k}_concat")([x, skips[k - 1]])
        x = dropout(x, f"dec{k}_drop", config.dropout, 2 ** (k - 1))
        x = _conv_block(layer, x, config, k - 1, f"dec{k}")
    activation = "sigmoid" if config.n_classes == 1 else "softmax"
    return layer(f"Conv{d}", "output", config.n_classes, 1, padding="same",
                 activation=activation, dtype="float32")(x)


class _PolicyLayers:
    """Makes ``keras.layers`` under one dtype policy (mixed precision) unless a layer names
    its own ``dtype``; ``make(kind, name, ...)`` is `unet_graph`'s ``layer``."""

    def __init__(self, layers: Any, policy: str):
        self._layers, self._policy = layers, policy

    def make(self, kind: str, name: str, *args: Any, **kwargs: Any) -> Any:
        if self._policy != "float32":
            kwargs.setdefault("dtype", self._policy)
        return getattr(self._layers, kind)(*args, name=name, **kwargs)


def _conv_block(layer, x, config: UNetConfig, level: int, prefix: str):
    """Two 'same' convolutions of ``level`` (its filters and kernel) with ReLU
    (``{prefix}_conv1``, ``_conv2``), each followed by batch normalisation (``_bn``)
    before its ReLU (``_relu``) when ``config.batch_norm``."""
    conv, filters, kernel = f"Conv{config.ndim}D", config.filters(level), config.kernel(level)
    for i in (1, 2):
        if config.batch_norm:
            x = layer(conv, f"{prefix}_conv{i}", filters, kernel, padding="same",
                      use_bias=False)(x)
            x = layer("BatchNormalization", f"{prefix}_bn{i}")(x)
            x = layer("Activation", f"{prefix}_relu{i}", "relu")(x)
        else:
            x = layer(conv, f"{prefix}_conv{i}", filters, kernel, activation="relu",
                      padding="same")(x)
    return x
