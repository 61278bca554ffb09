"""What a network costs, from its config alone: parameters, FLOP, receptive field, halo,
memory and the tile side that fits a budget."""

import os

import numpy as np
import pytest

from napari_unet.model.config import UNetConfig
from napari_unet.model.costs import (
    auto_tile_size,
    count_parameters,
    flops_per_megapixel,
    halo,
    receptive_field,
    training_memory_bytes,
)
from napari_unet.model.network import build_unet


def test_default_cost_and_receptive_field():
    c = UNetConfig()
    assert round(flops_per_megapixel(c) / 1e9, 1) == 97.1
    assert receptive_field(c) == 230
    assert halo(c) % 16 == 0 and halo(c) >= receptive_field(c) // 2


@pytest.mark.skipif(os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow",
                    reason="measures gradients with TensorFlow's GradientTape")
def test_receptive_field_bounds_the_real_dependence():
    """Gradients of an output pixel are zero outside the computed halo on each side."""
    import keras
    import tensorflow as tf

    c = UNetConfig(depth=2, start_neurons=4)
    model = build_unet(c)
    rng = np.random.default_rng(0)
    for w in model.weights:  # positive weights and inputs: every ReLU is active
        w.assign(rng.uniform(0.01, 0.1, w.shape).astype(np.float32))
    features = keras.Model(model.input, model.get_layer("dec1_conv2").output)
    x = tf.Variable(rng.uniform(0.1, 1.0, (1, 128, 128, 1)).astype("float32"))
    reach = 0
    for centre in range(64, 68):
        with tf.GradientTape() as tape:
            y = tf.reduce_sum(features(x, training=False)[0, centre, centre])
        g = np.abs(tape.gradient(y, x).numpy()[0, :, :, 0]).sum(1)
        rows = np.nonzero(g)[0]
        reach = max(reach, centre - rows.min(), rows.max() - centre)
        assert rows.max() - rows.min() + 1 <= receptive_field(c)
    assert 0 < reach <= halo(c)


def test_auto_tile_size_follows_the_memory_budget():
    config = UNetConfig()
    small = auto_tile_size(config, 64 << 20)
    large = auto_tile_size(config, 1 << 30)
    assert small % 16 == 0 and large % 16 == 0 and small < large
    assert small > 2 * halo(config)

    # for an image smaller than the largest window, the window covering it whole is chosen
    assert auto_tile_size(config, 1 << 30, (100, 120)) >= 128


def test_memory_estimates_grow_with_the_work():
    config = UNetConfig(depth=2, start_neurons=4)
    assert training_memory_bytes(config, 64, 4) < training_memory_bytes(config, 128, 4)
    assert training_memory_bytes(config, 64, 4) < training_memory_bytes(config, 64, 8)
    assert count_parameters(UNetConfig(start_neurons=8)) < count_parameters(UNetConfig())
    assert np.isclose(flops_per_megapixel(UNetConfig(start_neurons=32)) /
                      flops_per_megapixel(UNetConfig()), 4, rtol=0.01)
