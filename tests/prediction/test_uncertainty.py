"""Monte-Carlo dropout uncertainty: where it is high, that tiles and blocks do not change
it, and that it vanishes without dropout; for 2D networks and for 3D ones on volumes."""

import dask.array as da
import numpy as np
import pytest

from napari_unet.common.progress import drain
from napari_unet.model.config import UNetConfig
from napari_unet.model.unet import UNetModel
from napari_unet.prediction.uncertainty import iter_uncertainty, uncertainty
from napari_unet.samples.nuclei import make_nuclei, make_nuclei_stack

from ..helpers import assert_unchanged


@pytest.fixture(scope="module")
def foreground_model():
    """A tiny foreground U-Net trained for a few epochs: good but not perfect."""
    from napari_unet.training.job import train

    image, labels = make_nuclei((128, 128), seed=21)
    return train(image, labels > 0, UNetConfig(depth=2, start_neurons=8), epochs=3,
                 steps_per_epoch=10, patch_size=64, batch_size=4, learning_rate=3e-3, seed=0,
                 target="foreground", calibrate=False, verbose=False).model


def test_entropy_is_higher_where_the_model_is_wrong(foreground_model):
    image, labels = make_nuclei((128, 128), seed=5)
    result = uncertainty(foreground_model, image, passes=8)
    wrong = (result.probabilities > 0.5) != (labels > 0)
    assert 0 < wrong.mean() < 0.5
    assert result.entropy[wrong].mean() > result.entropy[~wrong].mean() + 0.1
    assert result.spread[wrong].mean() > result.spread[~wrong].mean()
    assert result.entropy.dtype == np.float32 and result.entropy.shape == image.shape
    assert 0.0 <= result.entropy.min() and result.entropy.max() <= 1.0


def test_tiled_lazy_and_whole_maps_are_equal(foreground_model):
    image, _ = make_nuclei((192, 160), seed=6)
    whole = uncertainty(foreground_model, image, passes=6)
    events = []
    tiled = drain(iter_uncertainty(foreground_model, image, 6, tile_size=96), events.append)
    assert events[-1].total > 1  # really tiled
    lazy = uncertainty(foreground_model, da.from_array(image, chunks=64), passes=6, chunk=64)
    assert len(lazy.entropy.chunks[0]) > 1
    for name in ("entropy", "spread", "probabilities"):
        reference = getattr(whole, name)
        np.testing.assert_allclose(getattr(tiled, name), reference, atol=1e-5)
        np.testing.assert_allclose(np.asarray(getattr(lazy, name)), reference, atol=1e-5)


def test_same_call_gives_the_same_maps_and_input_is_untouched(foreground_model):
    image, _ = make_nuclei((64, 64), seed=7)
    before = image.copy()
    first, second = (uncertainty(foreground_model, image, passes=4) for _ in range(2))
    np.testing.assert_array_equal(first.entropy, second.entropy)
    assert_unchanged(before, image)


def test_no_dropout_means_no_spread():
    model = UNetModel.new(UNetConfig(depth=2, start_neurons=4, dropout=0.0, dropout_first=0.0))
    image, _ = make_nuclei((64, 64), seed=8)
    result = uncertainty(model, image, passes=5)
    assert np.all(result.spread == 0.0)
    with_dropout = UNetModel.new(UNetConfig(depth=2, start_neurons=4))
    with_dropout.keras_model.set_weights(model.keras_model.get_weights())
    assert uncertainty(with_dropout, image, passes=5).spread.max() > 0


def test_stacks_and_multi_class_models(trained_tiny):
    image = np.stack([make_nuclei((64, 64), seed=s)[0] for s in (1, 2, 3)])
    result = uncertainty(trained_tiny, image, passes=3, axes="ZYX")
    assert result.entropy.shape == (3, 64, 64) and result.spread.shape == (3, 64, 64)
    assert result.probabilities.shape == (3, 64, 64, 3)
    np.testing.assert_allclose(result.probabilities.sum(-1), 1.0, atol=1e-4)


@pytest.mark.parametrize("passes", [0, 1, 2.5, "8", 1000])
def test_bad_passes_are_refused(random_tiny, passes):
    with pytest.raises(ValueError, match="passes"):
        uncertainty(random_tiny, np.zeros((32, 32), np.float32), passes=passes)


def test_the_image_border_is_not_brighter_than_the_inside(trained_tiny):
    """The network is unsure of an image's outermost pixels only because its convolutions
    pad with zeros there; the maps see a mirrored margin instead, so their edges do not
    light up as "paint here" (they did: 3x the median along every border)."""
    from napari_unet.samples.nuclei import make_nuclei

    image = make_nuclei((128, 128), seed=8)[0]
    entropy = uncertainty(trained_tiny, image, 4).entropy
    rows, cols = entropy.mean(axis=1), entropy.mean(axis=0)
    inside = np.median(rows)
    assert max(rows[0], rows[-1], cols[0], cols[-1]) < 1.5 * inside


# ----------------------------------------------------------------------------- 3D networks
@pytest.fixture(scope="module")
def cube_model():
    """A tiny random 3D U-Net that pools Z at every level (Z masks on steps of 2 and 4)."""
    return UNetModel.new(UNetConfig(ndim=3, depth=2, start_neurons=2))


@pytest.fixture(scope="module")
def thin_model():
    """A tiny random 3-class 3D U-Net for a stack whose Z step is 3x its pixel size: Z is
    left alone on its first level, so its masks step 1 plane where rows step 2 pixels."""
    return UNetModel.new(UNetConfig.for_spacing((3, 1, 1), depth=2, start_neurons=2,
                                                n_classes=3))


def test_a_3d_network_gives_volume_maps_that_vary_and_repeat(cube_model):
    image = make_nuclei_stack((8, 32, 32), seed=3)[0]
    before = image.copy()
    result = uncertainty(cube_model, image, passes=4, axes="ZYX")
    for name in ("entropy", "spread", "probabilities"):
        assert getattr(result, name).shape == (8, 32, 32)
        assert getattr(result, name).dtype == np.float32
    assert 0.0 <= result.entropy.min() and result.entropy.max() <= 1.0
    assert result.entropy.max() > 0 and np.ptp(result.entropy) > 0
    assert result.spread.max() > 0 and result.spread.std() > 0
    assert np.ptp(result.spread, axis=(1, 2)).min() > 0  # every plane, the mirrored ones too
    again = uncertainty(cube_model, image, passes=4, axes="ZYX")
    np.testing.assert_array_equal(again.entropy, result.entropy)
    np.testing.assert_array_equal(again.spread, result.spread)
    assert_unchanged(before, image)


def test_3d_dropout_masks_follow_the_plane_row_column_and_pass():
    """The mask of a 3D feature map is the whole volume's, wherever the window starts (in
    input pixels, each axis in its own steps), and differs between planes and passes."""
    from napari_unet.backend.runtime import load_keras
    from napari_unet.prediction.uncertainty import _coordinate_dropout_class

    ops = load_keras().ops
    layer = _coordinate_dropout_class()(0.5, (2, 4, 4), 1)  # rate, (Z, Y, X) steps, salt

    def mask(shape, origin):
        x = ops.ones((1, *shape, 3), "float32")
        return np.asarray(ops.convert_to_numpy(layer([x, ops.convert_to_tensor(
            np.array([origin], np.int32))])))[0]

    whole = mask((6, 5, 5), (0, 0, 0, 0))
    assert set(np.unique(whole)) == {0.0, 2.0} and 0.3 < (whole == 0).mean() < 0.7
    np.testing.assert_array_equal(mask((4, 3, 5), (4, 8, 0, 0)), whole[2:, 2:])
    assert not np.array_equal(whole[0], whole[1])  # each plane its own mask
    assert not np.array_equal(mask((6, 5, 5), (0, 0, 0, 1)), whole)  # each pass too


def _origins_seen(monkeypatch) -> list:
    """The window origins `MCDropout.run` is given from now on (each (plane, row, column))."""
    from napari_unet.prediction.uncertainty import MCDropout

    seen, real_run = [], MCDropout.run

    def run(self, windows, origins, lo, scale):
        seen.extend(origins)
        return real_run(self, windows, origins, lo, scale)

    monkeypatch.setattr(MCDropout, "run", run)
    return seen


@pytest.mark.parametrize("axis", ["Z", "X"])
def test_3d_maps_of_windows_along_z_or_x_equal_the_whole_volume(thin_model, monkeypatch, axis):
    """The dropout masks follow each feature's plane, row and column in the whole volume,
    in each level's own steps, so windows cut along Z or X, and lazy blocks, give the
    one-window maps."""
    import warnings

    from napari_unet.backend.devices import accelerator_memory
    from napari_unet.model.costs import inference_bytes_per_pixel

    config = thin_model.config  # halos (12, 32, 32) px; the maps mirror 2 planes, 4 px
    shape = (36, 16, 16) if axis == "Z" else (6, 16, 120)
    image = make_nuclei_stack(shape, seed=4)[0]
    seen = _origins_seen(monkeypatch)
    whole = uncertainty(thin_model, image, passes=3, axes="ZYX", memory_budget=1 << 30)
    assert len(seen) == 1
    budget = 1 << 30  # X: windows of 96 px, all 10 (mirrored) planes
    if axis == "Z":  # windows of 24 x 24 px (mirrored), 28 of the 40 planes: 4 passes' worth
        accelerator = accelerator_memory() is not None
        budget = int(4 * inference_bytes_per_pixel(config, accelerator) * 24 * 24 * 28)
    seen.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # small tiles waste time: said
        tiled = uncertainty(thin_model, image, passes=3, axes="ZYX", tile_size=96,
                            memory_budget=budget)
    along = "ZYX".index(axis)  # really cut, along that axis only
    assert len({o[along] for o in seen}) > 1
    assert len({o[:along] + o[along + 1:] for o in seen}) == 1
    assert tiled.probabilities.shape == shape + (3,)
    maps = [tiled]
    if axis == "X":  # and lazy blocks (volumes) of 64 px along X, with their halo
        lazy = uncertainty(thin_model, da.from_array(image, chunks=(6, 16, 64)), passes=3,
                           axes="ZYX", chunk=64)
        assert len(lazy.entropy.chunks[2]) == 2
        maps.append(lazy)
    for result in maps:
        for name in ("entropy", "spread", "probabilities"):
            np.testing.assert_allclose(np.asarray(getattr(result, name)), getattr(whole, name),
                                       atol=1e-5)
    assert whole.spread.max() > 0


def test_a_3d_network_refuses_a_plane_and_a_plane_origin(cube_model):
    with pytest.raises(ValueError, match="no Z"):
        uncertainty(cube_model, np.zeros((32, 32), np.float32), passes=2, axes="YX")
    with pytest.raises(ValueError, match=r"origin must be 3 .*\(plane, row, column\)"):
        drain(iter_uncertainty(cube_model, np.zeros((4, 16, 16), np.float32), 2,
                               axes="ZYX", origin=(0, 0)))
