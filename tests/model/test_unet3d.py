"""The 3D U-Net: the seed's topology with Conv3D, MaxPooling3D and Conv3DTranspose, Z left
alone on the levels of an anisotropic stack (nnU-Net's rule), and its costs."""

import os

import numpy as np
import pytest

from napari_unet.model.config import UNetConfig
from napari_unet.model.costs import (
    count_parameters,
    flops_per_megapixel,
    halo,
    halos,
    inference_bytes_per_pixel,
    receptive_field,
    training_memory_bytes,
)
from napari_unet.model.network import build_unet


@pytest.mark.parametrize("spacing, depth, levels", [
    ((1, 1, 1), 2, 0), ((2, 1, 1), 3, 0), ((3, 1, 1), 2, 1), ((5, 0.5, 0.5), 4, 3),
    ({"Z": 5.0, "Y": 1.0, "X": 1.0}, 3, 2), ((40, 1, 1), 2, 2)])
def test_anisotropic_levels_follow_the_voxel_size(spacing, depth, levels):
    config = UNetConfig.for_spacing(spacing, depth=depth, start_neurons=2)
    assert config.ndim == 3 and config.z_unpooled_levels == levels
    assert config.size_multiples == (2 ** (depth - levels), 2**depth, 2**depth)
    assert [config.pools_z(k) for k in range(depth)] == [k >= levels for k in range(depth)]
    assert config.kernel(0) == ((1, 3, 3) if levels else (3, 3, 3))
    assert UNetConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize("bad, match", [
    ({"ndim": 4}, "ndim"), ({"ndim": 2, "z_unpooled_levels": 1}, "3D"),
    ({"ndim": 3, "depth": 2, "z_unpooled_levels": 3}, "z_unpooled_levels")])
def test_invalid_3d_options_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        UNetConfig(**bad)


def test_a_spacing_that_is_not_three_sizes_is_refused():
    for bad in ((1, 1), (0, 1, 1), (1, float("nan"), 1), "ZYX"):
        with pytest.raises(ValueError, match="spacing"):
            UNetConfig.for_spacing(bad)


@pytest.mark.parametrize("config", [
    UNetConfig(ndim=3, depth=1, start_neurons=4),
    UNetConfig.for_spacing((3, 1, 1), depth=2, start_neurons=4, n_classes=3),
    UNetConfig.for_spacing((5, 1, 1), depth=3, start_neurons=2, batch_norm=True, in_channels=2)])
def test_the_3d_build_matches_its_config(config):
    model = build_unet(config, precision="float32")
    assert model.count_params() == count_parameters(config)
    names = [layer.name for layer in model.layers]
    for k in range(1, config.depth + 1):
        for part in ("conv1", "conv2", "pool", "drop"):
            assert f"enc{k}_{part}" in names
        for part in ("up", "concat", "drop", "conv1", "conv2"):
            assert f"dec{k}_{part}" in names
    assert names[-1] == "output" and type(model.get_layer("output")).__name__ == "Conv3D"
    first = model.get_layer("enc1_conv1").get_config()["kernel_size"]
    assert tuple(first) == config.kernel(0)
    assert tuple(model.get_layer("enc1_pool").get_config()["pool_size"]) == config.pool(0)
    assert tuple(model.get_layer("dec1_up").get_config()["strides"]) == config.pool(0)
    for shape in ((config.size_multiples[0] * 2, 16, 24), (config.size_multiples[0], 8, 8)):
        x = np.zeros((1, *shape, config.in_channels), np.float32)
        assert model.predict(x, verbose=0).shape == (1, *shape, config.n_classes)


def test_3d_costs_grow_with_the_kernel_volume():
    flat = UNetConfig(depth=2, start_neurons=4)
    cube = UNetConfig(ndim=3, depth=2, start_neurons=4)
    thin = UNetConfig.for_spacing((5, 1, 1), depth=2, start_neurons=4)
    assert count_parameters(thin) < count_parameters(cube)
    assert flops_per_megapixel(flat) < flops_per_megapixel(thin) < flops_per_megapixel(cube)
    assert receptive_field(cube, "Z") == receptive_field(cube, "Y") == receptive_field(flat)
    assert receptive_field(thin, "Z") < receptive_field(thin, "Y")
    assert halos(thin) == (halo(thin, "Z"), halo(thin, "Y"), halo(thin, "X"))
    assert halo(thin, "Z") % thin.size_multiples[0] == 0
    # a cube halves Z at each level too: less per voxel; an unpooled Z keeps it like a plane
    assert inference_bytes_per_pixel(cube) < inference_bytes_per_pixel(thin)
    assert inference_bytes_per_pixel(thin) == inference_bytes_per_pixel(flat)
    assert training_memory_bytes(cube, 32, 2) == training_memory_bytes(cube, (32, 32, 32), 2)
    with pytest.raises(ValueError, match="no Z"):
        receptive_field(flat, "Z")


@pytest.mark.skipif(os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow",
                    reason="measures gradients with TensorFlow's GradientTape")
@pytest.mark.parametrize("spacing", [(1, 1, 1), (3, 1, 1), (5, 1, 1)])
def test_the_3d_receptive_field_bounds_the_real_dependence(spacing):
    """Gradients of an output voxel are zero outside the computed field and halo, per axis."""
    import keras
    import tensorflow as tf

    config = UNetConfig.for_spacing(spacing, depth=2, start_neurons=2)
    model = build_unet(config, precision="float32")
    rng = np.random.default_rng(0)
    for w in model.weights:  # positive weights and inputs: every ReLU is active
        w.assign(rng.uniform(0.01, 0.1, w.shape).astype(np.float32))
    features = keras.Model(model.input, model.get_layer("dec1_conv2").output)
    x = tf.Variable(rng.uniform(0.1, 1.0, (1, 64, 64, 64, 1)).astype("float32"))
    reach = {"Z": 0, "Y": 0}
    for centre in range(32, 34):
        with tf.GradientTape() as tape:
            y = tf.reduce_sum(features(x, training=False)[0, centre, centre, centre])
        g = np.abs(tape.gradient(y, x).numpy()[0, ..., 0])
        for axis, profile in (("Z", g.sum((1, 2))), ("Y", g.sum((0, 2)))):
            hit = np.nonzero(profile)[0]
            assert hit.max() - hit.min() + 1 <= receptive_field(config, axis)
            reach[axis] = max(reach[axis], centre - hit.min(), hit.max() - centre)
    for axis in reach:
        assert 0 < reach[axis] <= halo(config, axis)
    if spacing[0] > 2:  # the unpooled levels see fewer planes than pixels
        assert reach["Z"] < reach["Y"]


def test_a_3d_model_file_round_trips(tmp_path):
    from napari_unet import UNetModel
    from napari_unet.model.files import load_model, save_model

    config = UNetConfig.for_spacing((3, 1, 1), depth=2, start_neurons=4, n_classes=3)
    model = UNetModel.new(config, target="boundary")
    loaded = load_model(save_model(model, tmp_path / "v.keras"))
    assert loaded.config == config and loaded.config.z_unpooled_levels == 1
    x = np.random.default_rng(1).random((1, 4, 16, 16, 1), dtype=np.float32)
    np.testing.assert_array_equal(loaded.keras_model.predict(x, verbose=0),
                                  model.keras_model.predict(x, verbose=0))


def test_a_3d_network_predicts_volumes_tiled_as_whole():
    """Windows cut along Z, Y and X with each axis' halo give the whole-volume pass."""
    import warnings

    from napari_unet import UNetModel
    from napari_unet.prediction.api import predict, segment
    from napari_unet.prediction.tiling import TilePlan

    config = UNetConfig.for_spacing((3, 1, 1), depth=2, start_neurons=4, n_classes=3)
    model = UNetModel.new(config, target="boundary")
    image = (np.random.default_rng(0).random((45, 50, 60)) * 1000).astype(np.uint16)
    whole = predict(model, image, axes="ZYX", memory_budget=1 << 30)
    assert whole.shape == (45, 50, 60, 3)
    plan = TilePlan.make(config, image.shape, 80, None, 300_000)
    assert plan.window[0] < plan.padded[0] and len(plan.tiles) > 1  # cut along Z
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # small tiles waste time: said
        tiled = predict(model, image, axes="ZYX", tile_size=80, memory_budget=300_000)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)
    wide = np.concatenate([image] * 3, axis=2)  # 180 px wide: cut along X as well
    np.testing.assert_allclose(
        predict(model, wide, axes="ZYX", tile_size=80, memory_budget=1 << 30)[:, :, 60:120],
        predict(model, wide, axes="ZYX", memory_budget=1 << 30)[:, :, 60:120], atol=1e-5)
    two = predict(model, np.stack([image, image[::-1]]), axes="TZYX", memory_budget=1 << 30)
    np.testing.assert_allclose(two[0], whole, atol=1e-5)
    labels = segment(model, image, axes="ZYX", min_size=0)
    assert labels.shape == image.shape


def test_a_3d_network_on_a_plane_says_so_in_plain_words():
    import dask.array as da

    from napari_unet import UNetModel
    from napari_unet.prediction.api import predict
    from napari_unet.prediction.uncertainty import uncertainty

    model = UNetModel.new(UNetConfig(ndim=3, depth=1, start_neurons=2))
    with pytest.raises(ValueError, match="no Z"):
        predict(model, np.zeros((16, 16), np.float32), axes="YX")
    with pytest.raises(ValueError, match="no Z"):
        predict(model, da.zeros((16, 16), chunks=8), axes="YX")
    with pytest.raises(ValueError, match="no Z"):
        uncertainty(model, np.zeros((16, 16), np.float32), axes="YX", passes=2)


def test_running_out_of_memory_on_a_volume_shrinks_the_3d_windows(monkeypatch):
    """After an out-of-memory error the next windows hold fewer voxels per call, though a
    smaller Y/X tile lets a window take more planes: the budget for planes halves too."""
    import warnings

    from napari_unet import UNetModel
    from napari_unet.backend.forward import forward_for
    from napari_unet.prediction.api import predict

    config = UNetConfig.for_spacing((3, 1, 1), depth=1, start_neurons=2)
    model = UNetModel.new(config)
    image = (np.random.default_rng(2).random((20, 96, 96)) * 1000).astype(np.uint16)
    whole = predict(model, image, axes="ZYX", memory_budget=1 << 30)
    forward = forward_for(model.keras_model)
    real_run, sizes = forward.run, []

    def run(x, lo, scale):
        sizes.append(x.size)
        if len(sizes) == 1:
            raise MemoryError("out of memory")
        return real_run(x, lo, scale)

    monkeypatch.setattr(forward, "run", run)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        tiled = predict(model, image, axes="ZYX", tile_size=96, batch_size=1,
                        memory_budget=8_000_000)
    monkeypatch.undo()
    assert max(sizes[1:]) < sizes[0]
    np.testing.assert_allclose(tiled, whole, atol=1e-5)
