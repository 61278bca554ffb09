"""Monte-Carlo dropout uncertainty: where it is high, that tiles and blocks do not change
it, and that it vanishes without dropout."""

import dask.array as da
import numpy as np
import pytest

from napari_unet.common.progress import drain
from napari_unet.model.config import UNetConfig
from napari_unet.model.unet import UNetModel
from napari_unet.prediction.uncertainty import iter_uncertainty, uncertainty
from napari_unet.samples.nuclei import make_nuclei

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
