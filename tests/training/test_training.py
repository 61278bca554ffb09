import numpy as np
import pytest

from napari_unet.common.progress import TrainProgress, drain
from napari_unet.model.config import UNetConfig
from napari_unet.model.unet import UNetModel
from napari_unet.samples.nuclei import make_nuclei
from napari_unet.training.fit_loop import batches_per_call
from napari_unet.training.job import iter_train, train
from napari_unet.training.network import trained_network

from ..helpers import TINY, assert_unchanged

FAST = dict(patch_size=32, batch_size=2, epochs=2, steps_per_epoch=3, seed=0)


def test_training_learns_and_reports_progress(trained_tiny):
    h = trained_tiny.history
    assert set(h) == {"loss", "iou", "val_loss", "val_iou"} and len(h["loss"]) == 6
    assert h["loss"][-1] < h["loss"][0]
    # the best epoch has the highest validation IoU (the lower loss breaks ties)
    best = max(range(6), key=lambda i: (h["val_iou"][i], -h["val_loss"][i]))
    assert trained_tiny.info["best_epoch"] == best + 1
    assert trained_tiny.info["stopped_early"] is False


def test_generator_yields_batches_then_epochs_and_returns_result(nuclei):
    image, labels = nuclei
    gen = iter_train(image, labels, TINY, **FAST)
    events = []
    result = drain(gen, events.append)
    assert all(isinstance(e, TrainProgress) for e in events)
    phases = [(e.epoch, e.batch, e.phase) for e in events]
    k = batches_per_call(3)  # one batch event per call of the compiled step (3 on TensorFlow)
    per_epoch = [(b, "batch") for b in range(k, 4, k)] + [(3, "epoch")]
    assert phases == [(1, *p) for p in per_epoch] + [(2, *p) for p in per_epoch] + [
        (2, 3, "calibrate")]
    assert "val_loss" in events[len(per_epoch) - 1].logs
    model, history = result
    assert isinstance(model, UNetModel) and len(history["loss"]) == 2


def test_stop_ends_after_the_current_batch_and_keeps_best_weights(nuclei):
    image, labels = nuclei
    unet = UNetModel.new(TINY)
    km, snapshots = trained_network(unet.keras_model), []  # PyTorch trains a channels-first twin
    original = km.evaluate

    def evaluate_and_remember(*args, **kwargs):  # each epoch's validation, and its weights
        out = original(*args, **kwargs)
        snapshots.append(((out["iou"], -out["loss"]), km.get_weights()))
        return out

    km.evaluate = evaluate_and_remember
    calls = []

    k = batches_per_call(3)  # batches per call of the compiled step

    def should_stop():
        calls.append(1)
        return len(calls) >= 7 // k  # stop in epoch 3 (3 batches per epoch)

    seen = []
    result = train(image, labels, unet, should_stop=should_stop, callback=seen.append,
                   verbose=False, **{**FAST, "epochs": 5})
    assert result.model.info["stopped_early"] is True
    assert len(result.history["loss"]) == 3 and len(snapshots) == 3
    # should_stop is asked before every call but the first; the call starting when it
    # answers True (before batch 8 when each call is one batch) is the last, on every backend
    assert [e.phase for e in seen].count("batch") == 7 // k + 1
    best = max(range(3), key=lambda i: snapshots[i][0])  # highest IoU, then lowest loss
    assert result.model.info["best_epoch"] == best + 1
    for kept, expected in zip(unet.keras_model.get_weights(), snapshots[best][1]):
        np.testing.assert_array_equal(kept, expected)


def test_inputs_are_not_modified(nuclei):
    image, labels = nuclei
    image = image.astype(np.float32)
    before_i, before_l = image.copy(), labels.copy()
    train([image], [labels], TINY, **FAST)
    assert_unchanged(before_i, image)
    assert_unchanged(before_l, labels)


def test_sparse_scribbles_and_multiclass_train():
    image, truth = make_nuclei((64, 64), seed=5)
    scribbles = np.zeros_like(truth)
    scribbles[2:6, :] = 1  # a background stroke
    scribbles[truth > 0] = np.where(np.arange(truth[truth > 0].size) % 7 == 0, 2, 0)
    result = train(image, scribbles, TINY, label_mode="sparse", **FAST)
    assert np.isfinite(result.history["loss"]).all()

    classes = np.where(truth > 0, 1 + (truth % 2), 0)
    three = UNetConfig(depth=2, start_neurons=4, n_classes=3)
    result = train(image, classes, three, **FAST)
    assert result.model.keras_model.output_shape[-1] == 3


def test_stack_with_a_few_labelled_planes():
    stack = np.stack([make_nuclei((64, 64), seed=s)[0] for s in range(3)])
    labels = np.zeros(stack.shape, np.uint16)
    labels[1] = make_nuclei((64, 64), seed=1)[1]
    result = train(stack, labels, TINY, **FAST)
    assert result.model.info["epochs_run"] == 2


def test_continue_training_a_model(trained_tiny, nuclei):
    model = UNetModel.new(trained_tiny.config, target=trained_tiny.target)
    model.keras_model.set_weights(trained_tiny.keras_model.get_weights())
    image, labels = nuclei
    result = train(image, labels, model, **FAST)
    assert result.model is model and model.target == "boundary"
    assert not np.array_equal(model.keras_model.get_weights()[0],
                              trained_tiny.keras_model.get_weights()[0])


@pytest.mark.parametrize(
    "images, labels, kwargs, fragment",
    [
        (np.zeros((64, 64)), np.zeros((64, 64), int), {}, "labels are empty"),
        (np.zeros((64, 64)), np.ones((64, 64), int), {}, "every pixel is foreground"),
        (np.zeros((64, 64)), np.ones((60, 64), int), {}, "same size"),
        (np.full((64, 64), np.nan), np.eye(64, dtype=int), {}, "NaN"),
        (np.zeros((64, 64, 3)), np.eye(64, dtype=int), {"axes": "YXC"}, "expects 1"),
        ([np.zeros((64, 64))], [], {}, "1 images but 0 label"),
        (np.zeros((64, 64)), np.eye(64, dtype=int), {"patch_size": 30}, "multiple of 2\\*\\*depth = 4"),
        (np.zeros((64, 64)), np.eye(64, dtype=int), {"loss": "mse"}, "loss must be"),
        (np.zeros((64, 64)), np.eye(64, dtype=int), {"validation_fraction": 1.0}, "validation_fraction"),
        (np.zeros((64, 64)), np.eye(64, dtype=int), {"label_mode": "scribble"}, "label_mode"),
        (np.zeros((64, 64)), np.eye(64, dtype=int), {"border_weight": -1}, "border_weight"),
        (np.zeros((64, 64)), np.eye(64, dtype=int), {"border_sigma": 0}, "border_sigma"),
        (np.zeros((64, 64)), np.eye(64, dtype=int) + 1,
         {"border_weight": 10, "label_mode": "sparse"}, "dense instance labels"),
    ],
)
def test_bad_training_input_raises_clear_errors(images, labels, kwargs, fragment):
    settings = {**FAST, **kwargs}
    with pytest.raises(ValueError, match=fragment):
        train(images, labels, TINY, **settings)


def test_logged_losses_are_running_means_over_the_epoch(nuclei, monkeypatch):
    """Batch logs are the running mean of the epoch's batch losses (no dropout, and a
    learning rate too small to move the weights, so each batch's loss is its evaluation)."""
    from napari_unet.training.sampling import PatchSampler

    image, labels = nuclei
    unet = UNetModel.new(UNetConfig(depth=2, start_neurons=8, dropout_first=0.0, dropout=0.0))
    seen, original = [], PatchSampler.stream

    def recording(self, *args, **kwargs):
        for batch in original(self, *args, **kwargs):
            seen.append(batch)
            yield batch

    monkeypatch.setattr(PatchSampler, "stream", recording)
    initial = unet.keras_model.get_weights()
    events = []
    train(image, labels, unet, callback=events.append, verbose=False, learning_rate=1e-12,
          **{**FAST, "epochs": 1, "steps_per_epoch": 4})
    unet.keras_model.set_weights(initial)
    trained = trained_network(unet.keras_model)  # compiled by train(): the network or its twin
    raw = [trained.evaluate(x, y, verbose=0, return_dict=True)["loss"] for x, y in seen[:4]]
    batch = [e.logs["loss"] for e in events if e.phase == "batch"]
    k = batches_per_call(4)  # the logs after each call's last batch
    np.testing.assert_allclose(batch, (np.cumsum(raw) / np.arange(1, 5))[k - 1::k], rtol=1e-4)
    assert [e for e in events if e.phase == "epoch"][0].logs["loss"] == pytest.approx(batch[-1])


def test_automatic_epochs_are_sized_from_the_annotated_pixels():
    from napari_unet.training.settings import (
        MAX_AUTO_BATCHES,
        MAX_AUTO_EPOCHS,
        MIN_AUTO_BATCHES,
        MIN_AUTO_BATCHES_SPARSE,
        TrainSettings,
    )

    def planes(n, side, annotated=1.0):
        target = np.full((side, side), -1, np.int8)
        target.flat[: int(annotated * side * side)] = 0
        return [target] * n

    settings = TrainSettings(patch_size=128, batch_size=8)
    assert settings.epochs is None
    epochs, steps = settings.schedule(planes(1, 512, 0.5))  # one dense 256 x 512 image
    assert steps == 10 and epochs * steps == MIN_AUTO_BATCHES == 600
    sparse = TrainSettings(patch_size=128, batch_size=8, label_mode="sparse")
    epochs, steps = sparse.schedule(planes(1, 512, 0.02))  # a few scribbles
    assert steps == 10 and epochs * steps == MIN_AUTO_BATCHES_SPARSE
    epochs, steps = settings.schedule(planes(4, 512))  # dense labels: 8 batches a pass
    assert steps == 16 and epochs * steps >= MIN_AUTO_BATCHES > (epochs - 1) * steps
    epochs, steps = settings.schedule(planes(10, 1024))  # 80 batches a pass: 20 passes
    assert steps == 160 and epochs == 10
    epochs, steps = settings.schedule(planes(40, 2048))  # a large dataset: capped, >= 5 epochs
    assert steps == 2560 and epochs == 5
    epochs, steps = settings.schedule(planes(20, 1024))  # 20 passes would be 3200 batches
    assert epochs * steps <= MAX_AUTO_BATCHES and epochs == 6
    assert TrainSettings(time_budget=60).schedule(planes(1, 512))[0] == MAX_AUTO_EPOCHS
    assert TrainSettings(epochs=7, steps_per_epoch=3).schedule(planes(1, 512)) == (7, 3)
    with pytest.raises(ValueError, match="None to size training"):
        TrainSettings(epochs=0)


def test_border_weights_are_on_by_default_for_dense_instance_labels_only():
    from napari_unet.training.settings import AUTO_BORDER_WEIGHT, TrainSettings

    auto = TrainSettings()
    assert auto.border_weight is None and AUTO_BORDER_WEIGHT == 10
    assert auto.border_weight_for("boundary") == 10
    assert auto.border_weight_for("foreground") == auto.border_weight_for("classes") == 0
    assert TrainSettings(label_mode="sparse").border_weight_for("boundary") == 0
    assert TrainSettings(border_weight=0).border_weight_for("boundary") == 0
    assert TrainSettings(border_weight=3).border_weight_for("foreground") == 3


def test_border_weights_train_a_boundary_network(nuclei, monkeypatch):
    """With ``border_weight`` the batches carry the U-Net paper's weight map as a second
    target channel and the boundary network trains on it (validation stays unweighted)."""
    from napari_unet.training.sampling import PatchSampler

    shapes, heaviest = [], []
    batch = PatchSampler.batch

    def spy(self, rng=None):
        x, y = batch(self, rng)
        shapes.append(y.shape)
        heaviest.append(y[..., 1].max())
        assert np.all(y[..., 1][y[..., 0] < 0] == 0)  # not annotated (or held out): no weight
        return x, y

    monkeypatch.setattr(PatchSampler, "batch", spy)
    image, labels = nuclei
    result = train(image, labels, TINY, border_weight=10, border_sigma=5, **FAST)
    assert result.model.target == "boundary" and result.model.info["border_weight"] == 10
    assert shapes and all(s == (2, 32, 32, 2) for s in shapes) and max(heaviest) > 1.0
    assert np.isfinite(result.history["loss"]).all()
    assert np.isfinite(result.history["val_loss"]).all()


def test_events_report_the_training_time_the_time_limit_counts(nuclei):
    # the Train widget's time-limited progress bar is this clock: it must advance
    image, labels = nuclei
    events = []
    train(image, labels, TINY, callback=events.append, verbose=False,
          **{**FAST, "time_budget": 600})
    seconds = [e.seconds for e in events if e.phase in ("batch", "epoch")]
    assert seconds == sorted(seconds) and seconds[-1] > 0


def test_a_boundary_network_trained_on_a_0_1_mask_warns_that_it_will_not_split(nuclei):
    from napari_unet.training.data import labels_warning

    image, labels = nuclei
    mask = (labels > 0).astype(np.uint8)
    assert labels_warning("boundary", "dense", [labels]) == ""
    assert labels_warning("foreground", "dense", [mask]) == ""
    assert labels_warning("boundary", "sparse", [mask]) == ""
    config = UNetConfig(depth=1, start_neurons=2, n_classes=3)
    unet = train(image, mask, UNetModel.new(config, target="boundary"), **FAST).model
    assert "0/1 masks" in unet.summary.warning and "0/1 masks" in unet.summary.report()
    unet = train(image, labels, unet, **FAST).model  # a later round on instances: no warning
    assert "0/1 masks" not in unet.summary.warning


def test_the_widest_training_object_is_recorded_for_lazy_labels(nuclei):
    from napari_unet.training.data import largest_object

    labels = np.zeros((64, 96), np.int32)
    labels[5:15, 10:40] = 7  # 30 px wide
    labels[30:60, 50:60] = 2  # 30 px tall
    labels[20:22, 0:3] = 10**9  # a sparse id: the mask's regions, not an index per id
    assert largest_object("boundary", "dense", [labels]) == 30
    assert largest_object("foreground", "dense", [labels > 0, np.zeros((8, 8))]) == 30
    touching = np.zeros((16, 40), np.uint8)
    touching[2:8, 2:12], touching[2:8, 12:30] = 1, 2  # two classes side by side: one region
    assert largest_object("classes", "dense", [touching]) == 28
    assert largest_object("foreground", "dense", [np.zeros((3, 8, 8))]) == 0
    volume = np.zeros((3, 20, 20), np.uint8)
    volume[0, 2:5, 2:9], volume[2, 4:16, 3:6] = 1, 1  # a mask: regions per plane
    assert largest_object("foreground", "dense", [volume]) == 12
    volume[2, 4:16, 3:6] = 5  # ids: whole objects over the planes
    volume[1, 0:1, 10:20] = 5
    assert largest_object("boundary", "dense", [volume]) == 17
    assert largest_object("foreground", "sparse", [labels]) is None
    image, truth = nuclei
    unet = train(image, truth, TINY, **FAST).model
    widest = largest_object("boundary", "dense", [truth])
    assert unet.info["largest_object_px"] == widest > 0
