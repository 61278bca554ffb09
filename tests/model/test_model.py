"""The network: exact default architecture, knobs, sizes, receptive field."""

import numpy as np
import pytest

from napari_unet.model.config import UNetConfig
from napari_unet.model.costs import count_parameters
from napari_unet.model.network import build_unet


def _expected_default_layers():
    """The classic Keras U-Net (docs/architecture.md) as (name, class, filters, kernel, strides, activation, rate)."""
    f = 16
    rows = [("image", "InputLayer", None, None, None, None, None)]
    for k in range(1, 5):
        n = f * 2 ** (k - 1)
        rows += [
            (f"enc{k}_conv1", "Conv2D", n, (3, 3), (1, 1), "relu", None),
            (f"enc{k}_conv2", "Conv2D", n, (3, 3), (1, 1), "relu", None),
            (f"enc{k}_pool", "MaxPooling2D", None, (2, 2), (2, 2), None, None),
            (f"enc{k}_drop", "Dropout", None, None, None, None, 0.25 if k == 1 else 0.5),
        ]
    rows += [
        ("bottleneck_conv1", "Conv2D", f * 16, (3, 3), (1, 1), "relu", None),
        ("bottleneck_conv2", "Conv2D", f * 16, (3, 3), (1, 1), "relu", None),
    ]
    for k in range(4, 0, -1):
        n = f * 2 ** (k - 1)
        rows += [
            (f"dec{k}_up", "Conv2DTranspose", n, (3, 3), (2, 2), "linear", None),
            (f"dec{k}_concat", "Concatenate", None, None, None, None, None),
            (f"dec{k}_drop", "Dropout", None, None, None, None, 0.5),
            (f"dec{k}_conv1", "Conv2D", n, (3, 3), (1, 1), "relu", None),
            (f"dec{k}_conv2", "Conv2D", n, (3, 3), (1, 1), "relu", None),
        ]
    rows.append(("output", "Conv2D", 1, (1, 1), (1, 1), "sigmoid", None))
    return rows


def test_default_model_matches_design_layer_by_layer():
    model = build_unet()
    expected = _expected_default_layers()
    assert [layer.name for layer in model.layers] == [r[0] for r in expected]
    for layer, (name, cls, filters, kernel, strides, activation, rate) in zip(model.layers, expected):
        assert type(layer).__name__ == cls, name
        cfg = layer.get_config()
        if filters is not None:
            assert cfg["filters"] == filters, name
            assert tuple(cfg["kernel_size"]) == kernel, name
            assert tuple(cfg["strides"]) == strides, name
            assert cfg["activation"] == activation, name
            assert cfg["padding"] == "same", name
        if cls == "MaxPooling2D":
            assert tuple(cfg["pool_size"]) == kernel and tuple(cfg["strides"]) == strides
        if rate is not None:
            assert cfg["rate"] == rate, name
    # skip connections: dec k concatenates its up-sampling with enc k's second conv
    for k in range(1, 5):
        concat = model.get_layer(f"dec{k}_concat")
        inputs = [t._keras_history[0].name for t in concat.input]
        assert inputs == [f"dec{k}_up", f"enc{k}_conv2"]
    assert model.count_params() == 2_158_417
    assert count_parameters(UNetConfig()) == 2_158_417


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("in_channels, n_classes", [(1, 1), (3, 1), (2, 4)])
def test_knobs_shapes_and_analytic_parameter_count(depth, in_channels, n_classes):
    c = UNetConfig(depth=depth, start_neurons=4, in_channels=in_channels, n_classes=n_classes)
    model = build_unet(c)
    assert model.count_params() == count_parameters(c)
    m = c.size_multiple
    for h, w in [(m, m), (3 * m, 5 * m)]:
        y = model.predict_on_batch(np.zeros((2, h, w, in_channels), np.float32))
        assert y.shape == (2, h, w, n_classes)
    if n_classes > 1:
        np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("batch_norm, kernel_size", [(True, 3), (False, 5), (True, 1)])
def test_batch_norm_and_kernel_size(batch_norm, kernel_size):
    c = UNetConfig(depth=2, start_neurons=4, batch_norm=batch_norm, kernel_size=kernel_size)
    model = build_unet(c)
    assert model.count_params() == count_parameters(c)
    names = [layer.name for layer in model.layers]
    assert ("enc1_bn1" in names) == batch_norm
    assert model.get_layer("enc1_conv1").get_config()["kernel_size"] == (kernel_size, kernel_size)
