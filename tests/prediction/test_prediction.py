import numpy as np
import pytest

from napari_unet.common.progress import PredictProgress, drain
from napari_unet.labels.metrics import foreground_iou
from napari_unet.model.config import UNetConfig
from napari_unet.model.unet import UNetModel
from napari_unet.prediction.api import iter_predict, predict, segment

from ..helpers import assert_unchanged


def test_trained_model_segments_held_out_nuclei(trained_tiny, nuclei):
    image, truth = nuclei
    labels = segment(trained_tiny, image, min_size=5)
    assert labels.shape == image.shape and labels.dtype == np.uint8
    assert foreground_iou(labels, truth) > 0.6
    assert labels.max() > 3


@pytest.fixture(scope="module")
def depth3():
    return UNetModel.new(UNetConfig(depth=3, start_neurons=4))


@pytest.mark.parametrize("shape", [(101, 77), (37, 200), (13, 9), (150, 150)])
@pytest.mark.parametrize("tile", [152, 208])
def test_tiled_equals_whole_image(depth3, shape, tile):
    image = np.random.default_rng(0).random(shape).astype(np.float32)
    whole = predict(depth3, image, tile_size=1024)
    tiled = predict(depth3, image, tile_size=tile)
    assert tiled.shape == shape
    assert np.abs(tiled - whole).max() <= 1e-4


def test_progress_events_and_input_untouched(random_tiny):
    image = np.random.default_rng(1).random((70, 90)).astype(np.float32)
    before = image.copy()
    gen = iter_predict(random_tiny, image, tile_size=80)
    events = []
    probs = drain(gen, events.append)
    assert all(isinstance(e, PredictProgress) for e in events)
    assert events[-1].done == events[-1].total > 1
    assert probs.shape == image.shape and probs.dtype == np.float32
    assert_unchanged(before, image)


@pytest.mark.parametrize("shape, axes, out", [
    ((3, 40, 36), "ZYX", (3, 40, 36)),
    ((2, 40, 36), "TYX", (2, 40, 36)),
    ((2, 3, 40, 36), "TZYX", (2, 3, 40, 36)),
    ((40, 36, 3), "YXC", (40, 36)),
    ((3, 2, 40, 36), "CZYX", (2, 40, 36)),
])
def test_axis_layouts(shape, axes, out):
    channels = shape[axes.index("C")] if "C" in axes else 1
    model = UNetModel.new(UNetConfig(depth=2, start_neurons=4, in_channels=channels))
    image = np.random.default_rng(2).random(shape).astype(np.float32)
    probs = predict(model, image, axes=axes)
    assert probs.shape == out
    labels = segment(model, image, axes=axes, threshold=0.5)
    assert labels.shape == out
    if axes == "ZYX":  # identical planes are predicted identically, and like the plane alone
        same = np.stack([image[1]] * 3)
        stacked = predict(model, same)
        np.testing.assert_allclose(stacked[0], stacked[2], atol=1e-6)
        np.testing.assert_allclose(stacked[1], predict(model, image[1]), atol=2e-4)


def test_multiclass_outputs(nuclei):
    model = UNetModel.new(UNetConfig(depth=2, start_neurons=4, n_classes=3))
    image = nuclei[0]
    probs = predict(model, image)
    assert probs.shape == image.shape + (3,)
    classes = segment(model, image, instances=False)
    assert classes.shape == image.shape and classes.max() <= 2 and classes.dtype == np.uint8
    objects = segment(model, image)  # one id per connected object of any class
    assert objects.shape == image.shape
    assert objects.max() >= len(np.unique(classes[classes > 0]))  # each class present: >= 1
    assert np.array_equal(objects > 0, classes > 0)


def test_bad_prediction_input(random_tiny):
    with pytest.raises(ValueError, match="channel"):
        predict(random_tiny, np.zeros((32, 32, 3)), axes="YXC")
    with pytest.raises(ValueError, match="tile_size must be a multiple of 4"):
        predict(random_tiny, np.zeros((32, 32)), tile_size=50)
    with pytest.raises(ValueError, match="UNetModel"):
        predict(object(), np.zeros((32, 32)))
    with pytest.raises(ValueError, match="NaN"):
        predict(random_tiny, np.full((32, 32), np.nan))
    with pytest.raises(ValueError, match="threshold"):
        segment(random_tiny, np.zeros((32, 32)), threshold=1.5)


@pytest.mark.parametrize("when", ["run", "fetch"])
def test_out_of_memory_retries_with_smaller_batches(random_tiny, monkeypatch, when):
    """Running out of memory when a batch is dispatched, or (asynchronous backends) only
    when its result is fetched, halves the batch and starts again."""
    from napari_unet.backend.forward import forward_for

    forward = forward_for(random_tiny.keras_model)
    real_run, real_fetch = forward.run, forward.fetch
    calls = []

    def run(x, lo, scale):
        calls.append(len(x))
        if when == "run" and len(x) > 1:
            raise MemoryError("out of memory")
        return len(x), real_run(x, lo, scale)

    def fetch(handle):
        if when == "fetch" and handle[0] > 1:
            raise RuntimeError("RESOURCE_EXHAUSTED: out of memory while trying to allocate")
        return real_fetch(handle[1])

    monkeypatch.setattr(forward, "run", run)
    monkeypatch.setattr(forward, "fetch", fetch)
    image = np.random.default_rng(3).random((4, 32, 32)).astype(np.float32)
    with pytest.warns(RuntimeWarning, match="Out of memory"):
        probs = predict(random_tiny, image, batch_size=4)
    monkeypatch.undo()
    np.testing.assert_allclose(probs, predict(random_tiny, image), atol=1e-6)
    assert probs.shape == image.shape and calls[0] == 4 and calls[-1] == 1
