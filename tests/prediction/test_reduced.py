"""Labels from maps reduced on the device (`napari_unet.prediction.reduced`) equal the labels
decoded from the float32 probabilities, exactly, for every target; the maps are smaller."""

import numpy as np
import pytest

from napari_unet import predict, segment
from napari_unet.labels.decode import MASKED, label_maps, labels_from_probabilities
from napari_unet.labels.options import LabelOptions
from napari_unet.model.config import UNetConfig
from napari_unet.model.unet import UNetModel
from napari_unet.prediction.reduced import Reduced
from napari_unet.prediction.tiled import iter_tiled
from napari_unet.common.progress import drain


def _model(target):
    from napari_unet.backend.runtime import load_keras

    load_keras().utils.set_random_seed(1)  # an untrained network whose outputs vary
    classes = {"foreground": 1, "boundary": 3, "classes": 4}[target]
    return UNetModel.new(UNetConfig(depth=2, start_neurons=4, n_classes=classes), target=target)


def _options(model, probs, instances):
    """Thresholds where an untrained network's probabilities give objects of every kind:
    a third of the pixels foreground, seeds in half of those."""
    if model.target == "foreground":
        threshold = float(np.quantile(probs, 0.66))
        return LabelOptions(threshold, instances, 3), threshold
    if model.target == "boundary":
        threshold = float(np.quantile(1 - probs[..., 0], 0.66))
        seed = float(np.quantile(probs[..., 1][1 - probs[..., 0] > threshold], 0.5))
        return LabelOptions(threshold, instances, 3, seed_threshold=seed), threshold
    return LabelOptions(None, instances, 3), None


@pytest.mark.parametrize("target", ["foreground", "boundary", "classes"])
@pytest.mark.parametrize("instances", [True, False])
def test_labels_from_device_maps_equal_labels_from_probabilities(target, instances):
    model = _model(target)
    image = np.random.default_rng(0).integers(0, 4000, (2, 70, 90), dtype=np.uint16)
    probs = predict(model, image, axes="ZYX")
    options, threshold = _options(model, probs, instances)
    kwargs = {} if threshold is None else {"threshold": threshold}
    if target == "boundary":
        kwargs["seed_threshold"] = options.seed_threshold
    labels = segment(model, image, axes="ZYX", instances=instances, min_size=3, **kwargs)
    filled = options.for_unet(model, "ZYX")
    expected = labels_from_probabilities(probs, "ZYX", filled, target)
    assert labels.dtype == expected.dtype
    np.testing.assert_array_equal(labels, expected)
    if target != "classes":  # thresholds at quantiles: objects and background both present
        assert len(np.unique(labels)) > (20 if instances else 1)

    maps = drain(iter_tiled(model, image, axes="ZYX", network=Reduced(model, filled),
                            tile_size=68))[..., 0]  # windows with halos, as predict's
    tiled = predict(model, image, axes="ZYX", tile_size=68)
    host = label_maps(tiled, target, filled.decoding, instances)
    assert maps.dtype == host.dtype and maps.nbytes * (3 if target == "boundary" else 4) \
        <= tiled.nbytes
    np.testing.assert_array_equal(maps, host)
    if target == "boundary" and instances:
        assert (maps == MASKED).any() and (maps > filled.decoding.seed_threshold).any()


def test_a_3d_boundary_network_gives_the_same_labels_from_its_device_maps():
    from napari_unet.backend.runtime import load_keras

    load_keras().utils.set_random_seed(2)
    model = UNetModel.new(UNetConfig(ndim=3, depth=1, start_neurons=4, n_classes=3),
                          target="boundary")
    image = np.random.default_rng(1).integers(0, 4000, (12, 40, 48), dtype=np.uint16)
    probs = predict(model, image, axes="ZYX")
    options, threshold = _options(model, probs, True)
    labels = segment(model, image, axes="ZYX", threshold=threshold, min_size=3,
                     seed_threshold=options.seed_threshold)
    expected = labels_from_probabilities(probs, "ZYX", options.for_unet(model, "ZYX"), "boundary")
    np.testing.assert_array_equal(labels, expected)
    assert len(np.unique(labels)) > 5  # objects decoded in 3D, from the masked interior


@pytest.mark.parametrize("target", ["foreground", "classes"])
def test_probabilities_as_uint8_and_bfloat16_are_within_their_stated_tolerance(target):
    model = _model(target)
    image = np.random.default_rng(2).integers(0, 4000, (2, 70, 90), dtype=np.uint16)
    exact = predict(model, image, axes="ZYX", tile_size=68)
    as_uint8 = predict(model, image, axes="ZYX", tile_size=68, probabilities_as="uint8")
    assert as_uint8.dtype == np.uint8 and as_uint8.shape == exact.shape
    assert np.abs(as_uint8 / 255.0 - exact).max() <= 0.5 / 255 + 1e-6
    assert len(np.unique(as_uint8)) > 2  # not a constant (an untrained network: near 0.5)
    as_bf16 = predict(model, image, axes="ZYX", tile_size=68, probabilities_as="bfloat16")
    assert as_bf16.dtype == np.float32
    assert np.all(np.abs(as_bf16 - exact) <= 2.0**-8 * np.abs(exact) + 1e-7)
    assert not np.array_equal(as_bf16, exact)  # rounded: fewer bits went through


def test_probabilities_as_uint8_keeps_the_float32_labels_numpy_and_dask():
    import dask.array as da

    from napari_unet import probabilities_and_labels

    model = _model("boundary")
    image = np.random.default_rng(3).integers(0, 4000, (96, 96), dtype=np.uint16)
    probs, labels = probabilities_and_labels(model, image, LabelOptions(0.5), axes="YX")
    small, same = probabilities_and_labels(model, image, LabelOptions(0.5), axes="YX",
                                           probabilities_as="uint8")
    assert small.dtype == np.uint8 and small.shape == probs.shape
    np.testing.assert_array_equal(same, labels)
    np.testing.assert_array_equal(small, np.round(probs * np.float32(255)).astype(np.uint8))
    lazy = predict(model, da.from_array(image, chunks=48), axes="YX", probabilities_as="uint8")
    assert lazy.dtype == np.uint8
    assert np.abs(lazy.compute() / 255.0 - probs).max() <= 0.5 / 255 + 1e-6


def test_probabilities_as_an_unknown_type_is_refused_before_any_work():
    model = _model("foreground")
    image = np.zeros((32, 32), np.uint16)
    for call in (predict, segment):
        with pytest.raises(ValueError, match="probabilities_as must be one of"):
            call(model, image, axes="YX", probabilities_as="float16")
