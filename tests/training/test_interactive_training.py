"""Scribble training, a second round of strokes, live previews, fine-tuning and the
annotation record (the interactive loop of the Train widget, without Qt)."""

from dataclasses import replace

import numpy as np
import pytest

from napari_unet.common.progress import TrainPreview, drain
from napari_unet.model.config import UNetConfig
from napari_unet.model.unet import UNetModel
from napari_unet.labels.metrics import evaluate
from napari_unet.prediction.api import predict, segment
from napari_unet.samples.nuclei import make_nuclei
from napari_unet.testing.scribbles import (
    correction_strokes,
    simulate_scribbles,
    worst_block,
)
from napari_unet.training.job import iter_train, train
from napari_unet.training.network import training_optimizer
from napari_unet.training.preview import Preview
from napari_unet.training.provenance import annotation_record

from ..helpers import TINY

SCRIBBLE_SETTINGS = dict(label_mode="sparse", patch_size=64, batch_size=8, epochs=10,
                         steps_per_epoch=20, learning_rate=3e-3, validation_fraction=0.0,
                         seed=0, time_budget=180, verbose=False)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.fixture(scope="module")
def scribble_round():
    """A 256 x 256 nuclei image, scribbles on 2 % of it, and a U-Net trained on them."""
    image, labels = make_nuclei((256, 256), seed=0)
    scribbles = simulate_scribbles(labels, 0.02, seed=0)
    model = train(image, scribbles, UNetConfig(depth=2, start_neurons=16),
                  **SCRIBBLE_SETTINGS).model
    return image, labels, scribbles, model


def test_simulated_scribbles_are_sparse_and_right():
    _, labels = make_nuclei((256, 256), seed=4)
    scribbles = simulate_scribbles(labels, 0.02, seed=1)
    assert 0.01 < np.mean(scribbles > 0) <= 0.02
    assert np.all(labels[scribbles == 2] > 0) and np.all(labels[scribbles == 1] == 0)
    assert (scribbles == 1).sum() > 0.3 * (scribbles > 0).sum()
    with pytest.raises(ValueError, match="coverage"):
        simulate_scribbles(labels, 0.5)


def test_two_percent_scribbles_give_a_good_segmentation(scribble_round):
    image, labels, scribbles, model = scribble_round
    assert np.mean(scribbles > 0) <= 0.02
    assert model.info["train_seconds"] < 180
    assert _iou(predict(model, image) > 0.5, labels > 0) >= 0.85
    # touching nuclei are split by default: scribbles give no instances to calibrate on,
    # so the split distance comes from the sizes of the objects the model predicts
    assert model.decoding.split_distance == model.info["split_estimate"]["split_distance"] > 0
    assert evaluate(segment(model, image), labels)["ap@0.5"] >= 0.85


def test_second_round_on_the_worst_region_raises_iou():
    """Uneven illumination (the right side much brighter) and strokes only on the left:
    the first round marks the bright background as nuclei; painting the mistakes in the
    worst window and training on fixes most of it."""
    image, labels = make_nuclei((256, 256), seed=0)
    signal = np.percentile(image, 99) - np.percentile(image, 50)
    image = (image + 2 * signal * np.linspace(0, 1, 256)[None, :] ** 2).astype(np.float32)
    scribbles = simulate_scribbles(labels, 0.02, seed=0)
    scribbles[:, 150:] = 0
    model = train(image, scribbles, UNetConfig(depth=2, start_neurons=16),
                  **SCRIBBLE_SETTINGS).model
    before = predict(model, image) > 0.5
    window = worst_block(labels, before, 64)
    more = correction_strokes(scribbles, labels, before, block=64, coverage=0.05)
    assert np.array_equal(more[scribbles > 0], scribbles[scribbles > 0])  # old strokes kept
    assert (more > 0).sum() > (scribbles > 0).sum()
    steps_before = int(training_optimizer(model.keras_model).iterations)
    again = train(image, more, model, **{**SCRIBBLE_SETTINGS, "epochs": 5,
                                         "learning_rate": 1e-3}).model
    after = predict(again, image) > 0.5
    wrong = lambda pred: int(((pred > 0) != (labels > 0))[window].sum())  # noqa: E731
    assert wrong(after) < wrong(before)
    assert _iou(after, labels > 0) > _iou(before, labels > 0) + 0.05
    # the same network went on: optimizer state kept, history and rounds extended
    steps_after = int(training_optimizer(again.keras_model).iterations)
    assert again is model and steps_after > steps_before
    rounds = again.info["rounds"]
    assert len(again.history["loss"]) == rounds[0]["epochs"] + rounds[1]["epochs"]
    assert [r["first_epoch"] for r in rounds] == [1, rounds[0]["epochs"] + 1]
    painted = rounds[1]["annotations"][0]
    assert painted["annotated"] == int((more > 0).sum())
    assert painted["per_class"] == {"background": int((more == 1).sum()),
                                    "foreground": int((more == 2).sum())}
    assert again.info["annotations"] == rounds[1]["annotations"]


def test_previews_come_during_training_with_current_weights():
    image, labels = make_nuclei((96, 96), seed=2)
    events = []
    gen = iter_train(image, labels > 0, UNetConfig(depth=2, start_neurons=4), epochs=4,
                     steps_per_epoch=15, patch_size=64, batch_size=4, target="foreground",
                     seed=0, calibrate=False,
                     preview=Preview(rows=(16, 80), cols=(0, 64), every=0.5))
    result = drain(gen, events.append)
    previews = [e for e in events if isinstance(e, TrainPreview)]
    assert len(previews) >= 2
    first = previews[0]
    assert first.labels.shape == (64, 64) and first.foreground.shape == (64, 64)
    assert first.origin == (16, 0) and first.plane == 0
    order = [(e.epoch, e.batch) for e in previews]
    assert order == sorted(order)
    assert not np.array_equal(previews[0].foreground, previews[-1].foreground)  # it learns
    assert result.model.history["loss"]


@pytest.mark.parametrize("preview, message", [
    (Preview(image=3), "preview image 3"),
    (Preview(plane=2), "preview plane 2"),
    (Preview(rows=(0, 500)), "outside"),
    ("every 5 s", "Preview"),
])
def test_bad_previews_are_refused(preview, message):
    image, labels = make_nuclei((64, 64), seed=2)
    with pytest.raises(ValueError, match=message):
        train(image, labels > 0, UNetConfig(depth=1, start_neurons=4), epochs=1,
              steps_per_epoch=1, patch_size=32, verbose=False, preview=preview)
    with pytest.raises(ValueError, match="every"):
        Preview(every=0.1)


def test_fine_tuning_with_a_frozen_encoder_changes_only_the_decoder(trained_tiny):
    model = UNetModel(_clone(trained_tiny.keras_model), trained_tiny.summary)
    km = model.keras_model
    before = {w.path: np.asarray(w.numpy()) for w in km.weights}
    image, labels = make_nuclei((96, 96), seed=30)
    train(image, labels, model, epochs=1, steps_per_epoch=3, patch_size=64, batch_size=4,
          learning_rate=1e-4, freeze_encoder=True, verbose=False, calibrate=False)
    changed = {path for path, w in before.items()
               if not np.array_equal(w, np.asarray(_weight(km, path).numpy()))}
    assert changed and all(p.startswith(("dec", "output")) for p in changed)
    assert all(layer.trainable for layer in km.layers)
    assert model.info["rounds"][-1]["freeze_encoder"] is True


def _clone(km):
    from napari_unet.model.network import build_unet

    copy = build_unet(replace(TINY, n_classes=3))  # trained_tiny learnt the boundary target
    copy.set_weights(km.get_weights())
    return copy


def _weight(km, path):
    return next(w for w in km.weights if w.path == path)


def test_annotation_record_counts_dense_and_sparse_labels():
    dense = np.array([[0, 0, 1], [2, 2, 0]])
    record = annotation_record([dense], "dense", ["cells.tif"])
    assert record == [{"image": "cells.tif", "pixels": 6, "annotated": 6,
                       "per_class": {"background": 3, "objects": 3}, "objects": 2}]
    sparse = np.array([[0, 1, 1], [2, 3, 0]])
    record = annotation_record([sparse], "sparse", None, ["background", "nucleus", "cytoplasm"])
    assert record[0]["per_class"] == {"background": 2, "nucleus": 1, "cytoplasm": 1}
    assert record[0]["annotated"] == 4 and record[0]["image"] == "image 1"
