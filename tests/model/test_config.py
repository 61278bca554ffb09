import pytest

from napari_unet.model.config import UNetConfig


def test_defaults_are_the_classic_unet():
    c = UNetConfig()
    assert (c.start_neurons, c.depth, c.dropout_first, c.dropout) == (16, 4, 0.25, 0.5)
    assert (c.batch_norm, c.in_channels, c.n_classes, c.kernel_size) == (False, 1, 1, 3)
    assert c.size_multiple == 16


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"depth": 0}, "depth must be a whole number in 1..6"),
        ({"depth": 7}, "depth must be a whole number in 1..6"),
        ({"depth": 2.5}, "depth must be a whole number"),
        ({"start_neurons": 0}, "start_neurons"),
        ({"kernel_size": 4}, "kernel_size must be odd"),
        ({"dropout": 1.0}, "dropout must be a number in [0, 1)"),
        ({"dropout_first": -0.1}, "dropout_first"),
        ({"n_classes": 0}, "n_classes"),
        ({"in_channels": True}, "in_channels"),
        ({"batch_norm": "yes"}, "batch_norm"),
    ],
)
def test_invalid_config_raises_with_the_offending_value(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment.replace("[", r"\[").replace(")", r"\)")):
        UNetConfig(**kwargs)


def test_json_round_trip_and_unknown_keys():
    c = UNetConfig(depth=3, start_neurons=8, n_classes=3, batch_norm=True)
    assert UNetConfig.from_json(c.to_json()) == c
    with pytest.raises(ValueError, match="Unknown U-Net config keys"):
        UNetConfig.from_dict({"depth": 2, "filters": 3})
    with pytest.raises(ValueError, match="not valid JSON"):
        UNetConfig.from_json("{depth: 2")
