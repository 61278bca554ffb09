"""The compiled forward pass every prediction runs through, on each backend (this module
also runs under JAX and PyTorch, tests/test_backends.py): it gives the network's output,
follows the network's weights when they change, and on PyTorch runs a channels-first
twin of the network (backend/channels_first.py) where it can."""

import keras
import numpy as np
import pytest

from napari_unet.backend.forward import Forward
from napari_unet.model.config import UNetConfig
from napari_unet.model.network import build_unet

TORCH = keras.backend.backend() == "torch"
ONE = np.ones((1, 1, 1, 1), np.float32)


def forward_and_network(x, km):
    forward = Forward(km)
    return forward.fetch(forward.run(x, 0 * ONE, ONE)), np.asarray(km.predict(x, verbose=0))


@pytest.mark.parametrize("config", [UNetConfig(depth=2, start_neurons=4),
                                    UNetConfig(depth=2, start_neurons=4, n_classes=3,
                                               batch_norm=True)])
def test_the_forward_pass_gives_the_networks_output_and_follows_its_weights(config):
    km = build_unet(config)
    x = np.random.default_rng(0).random((2, 32, 48, 1), np.float32)
    forward = Forward(km)
    ours = forward.fetch(forward.run(x, 0 * ONE, ONE))
    np.testing.assert_allclose(ours, km.predict(x, verbose=0), rtol=1e-4, atol=1e-5)
    assert getattr(getattr(forward, "torch_network", None), "active", False) == TORCH
    km.set_weights([w * 0.5 + 0.01 for w in km.get_weights()])  # e.g. a further round
    changed = forward.fetch(forward.run(x, 0 * ONE, ONE))
    np.testing.assert_allclose(changed, km.predict(x, verbose=0), rtol=1e-4, atol=1e-5)
    assert not np.allclose(changed, ours)


def test_a_network_with_a_layer_the_twin_cannot_turn_runs_as_it_is():
    inputs = keras.Input((None, None, 1))
    y = keras.layers.Conv2D(2, 3, padding="same")(inputs)
    y = keras.layers.UpSampling2D(1)(y)
    km = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(y))
    x = np.random.default_rng(1).random((1, 16, 16, 1), np.float32)
    forward = Forward(km)
    np.testing.assert_allclose(forward.fetch(forward.run(x, 0 * ONE, ONE)),
                               km.predict(x, verbose=0), rtol=1e-4, atol=1e-5)
    if TORCH:
        assert not forward.torch_network.active
