"""Training a 3D network: volumes with labels on a few planes, Z columns held out, 3D
patches and augmentation, calibration in 3D, and the model file round trip."""

import numpy as np
import pytest

from napari_unet import UNetConfig
from napari_unet.model.normalization import PercentileNormalization
from napari_unet.training.augmentation import Augmentation
from napari_unet.training.data import IGNORE
from napari_unet.training.settings import TrainSettings
from napari_unet.model.costs import volume_patch_shape as patch_shape
from napari_unet.training.volumes import (
    VolumeSampler,
    prepare_volume_data,
    volume_held_out_and_sampler,
)


def _stack(planes=10, side=48, seed=0):
    from napari_unet.samples.nuclei import make_nuclei_stack

    return make_nuclei_stack((planes, side, side), seed=seed)


def _prepare(images, labels, config, axes="ZYX", target="boundary"):
    return prepare_volume_data(images, labels, config, "dense", PercentileNormalization(),
                               [axes] * len(images), None, target, 2)


def test_planes_without_labels_are_ignored_not_taken_for_background():
    image, labels = _stack()
    some = np.zeros_like(labels)
    some[[2, 6]] = labels[[2, 6]]  # two labelled planes of ten
    config = UNetConfig(ndim=3, depth=1, start_neurons=2, n_classes=3)
    data = _prepare([image], [some], config)
    (target,) = data.targets
    assert target.shape == image.shape and data.images[0].shape == image.shape + (1,)
    annotated = np.any(target >= 0, axis=(1, 2))
    assert list(np.flatnonzero(annotated)) == [2, 6]
    assert set(np.unique(target[2])) <= {0.0, 1.0, 2.0}
    assert data.sources[0].image == 0 and data.sources[0].z == -1


def test_a_3d_network_needs_a_z_axis_and_labels():
    config = UNetConfig(ndim=3, depth=1, start_neurons=2)
    image, labels = _stack()
    with pytest.raises(ValueError, match="no Z"):
        _prepare([image[0]], [labels[0]], config, axes="YX")
    with pytest.raises(ValueError, match="no annotated voxels"):
        _prepare([image], [np.zeros_like(labels)], config)


def test_patches_cover_about_the_same_distance_along_z():
    cube = UNetConfig(ndim=3, depth=2)
    thin = UNetConfig.for_spacing((5, 1, 1), depth=3)
    assert patch_shape(cube, 64, 100) == (64, 64, 64)
    assert patch_shape(thin, 64, 100) == (16, 64, 64)  # two unpooled levels: a quarter
    assert patch_shape(cube, 64, 10) == (12, 64, 64)  # the stack, rounded up to 4


def test_the_volume_sampler_draws_3d_batches_within_the_annotations():
    image, labels = _stack(planes=6, side=40)
    config = UNetConfig(ndim=3, depth=2, start_neurons=2, n_classes=3)
    data = _prepare([image], [labels], config)
    weights = [np.ones(labels.shape, np.float32)]
    sampler = VolumeSampler(data.images, data.targets, (8, 32, 32), 3, True,
                            np.random.default_rng(0), None, weights)
    x, y = sampler.batch()
    assert x.shape == (3, 8, 32, 32, 1) and y.shape == (3, 8, 32, 32, 2)
    assert set(np.unique(y[..., 0])) <= {IGNORE, 0.0, 1.0, 2.0}
    assert np.all(y[..., 1][y[..., 0] == IGNORE] == 0)  # padding weighs nothing
    assert np.any(y[..., 0] == IGNORE)  # 6 planes padded to 8


def test_3d_augmentation_moves_image_and_target_together():
    rng = np.random.default_rng(3)
    x = rng.random((2, 4, 16, 16, 1)).astype(np.float32)
    y = np.round(x * 2).astype(np.float32)  # a target that is a function of the image
    flips = Augmentation(intensity=False, gamma=False, noise=False, elastic=False)
    fx, fy = flips.apply(x, y, rng)
    np.testing.assert_array_equal(np.round(fx * 2), fy)
    same = np.repeat(x[:, :1], 4, axis=1)  # identical planes stay identical when deformed
    warp = Augmentation(flips=False, intensity=False, gamma=False, noise=False,
                        probability=1.0)
    wx, _ = warp.apply(same, np.zeros_like(same), rng)
    assert not np.array_equal(wx, same)
    for k in range(1, 4):
        np.testing.assert_array_equal(wx[:, k], wx[:, 0])


def test_validation_holds_out_whole_z_columns():
    image, labels = _stack(planes=8, side=64)
    config = UNetConfig(ndim=3, depth=1, start_neurons=2, n_classes=3)
    data = _prepare([image], [labels], config)
    settings = TrainSettings(patch_size=32, batch_size=2, validation_fraction=0.3, seed=1)
    from napari_unet import UNetModel

    held = volume_held_out_and_sampler(UNetModel.new(config, target="boundary"), settings, data)
    ignored = (held.targets[0] < 0) & (data.targets[0] >= 0)
    assert ignored.any()
    assert np.all(ignored == ignored[0])  # the same pixels in every plane
    x_val, y_val = held.validation
    assert x_val.shape[1:] == (8, 32, 32, 1) and np.any(y_val >= 0)


def test_a_3d_network_trains_saves_and_labels_volumes(tmp_path):
    from napari_unet import train
    from napari_unet.model.files import load_model, save_model
    from napari_unet.prediction.api import segment

    image, labels = _stack(planes=12, side=48, seed=1)
    config = UNetConfig.for_spacing({"Z": 2.0, "Y": 0.5, "X": 0.5}, depth=2, start_neurons=4)
    assert config.z_unpooled_levels == 1
    result = train(image, labels, config, axes="ZYX", patch_size=32, batch_size=2, epochs=2,
                   steps_per_epoch=3, seed=0, verbose=False,
                   spacing={"Z": 2.0, "Y": 0.5, "X": 0.5})
    unet = result.model
    assert unet.config.ndim == 3 and unet.target == "boundary" and len(result.history["loss"]) == 2
    record = unet.info["calibration"]
    assert record["spacing"] == {"Z": 2.0, "Y": 0.5, "X": 0.5} and record["objects"] > 0
    assert unet.decoding.to_dict() == {k: record[k] for k in unet.decoding.to_dict()}
    labels_3d = segment(unet, image, axes="ZYX")
    assert labels_3d.shape == image.shape
    loaded = load_model(save_model(unet, tmp_path / "v.keras"))
    assert loaded.config == unet.config and loaded.decoding == unet.decoding
    np.testing.assert_array_equal(segment(loaded, image, axes="ZYX"), labels_3d)


def test_a_stack_thinner_than_the_network_sees_is_said():
    image, labels = _stack(planes=8, side=48)
    config = UNetConfig(ndim=3, depth=3, start_neurons=2, n_classes=3)
    with pytest.warns(RuntimeWarning, match="mirrored padding"):
        _prepare([image], [labels], config)


def test_default_3d_patches_shrink_to_fit_memory_and_chosen_ones_stay():
    from napari_unet.model.costs import training_memory_bytes, volume_patch_shape
    from napari_unet.training.settings import TrainSettings
    from napari_unet.training.volumes import settings_for_volumes

    config = UNetConfig(ndim=3)  # the seed's widths in 3D: 128³ x 8 patches need tens of GiB
    defaults = TrainSettings()
    assert training_memory_bytes(config, volume_patch_shape(config, 128, 64), 8) > 8 * 2**30
    fitted = settings_for_volumes(defaults, config, depth=64, free=4 * 2**30)
    shape = volume_patch_shape(config, fitted.patch_size, 64)
    assert training_memory_bytes(config, shape, fitted.batch_size) <= 2 * 2**30
    assert fitted.batch_size == 2 and fitted.patch_size % config.size_multiple == 0
    assert 16 <= fitted.patch_size < 128 and defaults.patch_size == 128  # not modified
    on_four = settings_for_volumes(defaults, config, depth=64, devices=4, free=4 * 2**30)
    assert on_four.batch_size == 4  # a multiple of the devices, each holding one patch
    tiny = settings_for_volumes(defaults, config, depth=64, devices=3, free=2**20)
    assert (tiny.patch_size, tiny.batch_size) == (config.size_multiple, 8)  # ends; then refused
    chosen = TrainSettings(patch_size=128, batch_size=4)
    assert settings_for_volumes(chosen, config, depth=64, free=4 * 2**30) is chosen
    roomy = settings_for_volumes(defaults, UNetConfig(ndim=3, depth=1, start_neurons=2),
                                 depth=8, free=64 * 2**30)
    assert (roomy.patch_size, roomy.batch_size) == (128, 8)
