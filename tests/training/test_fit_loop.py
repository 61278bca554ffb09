"""Early stopping and learning-rate halving wait for enough batches (`fit_loop`)."""

import queue

import numpy as np

from napari_unet.training.fit_loop import (
    MIN_BATCHES_BEFORE_PLATEAU,
    MIN_PATIENCE_BATCHES,
    _Record,
    patience_epochs,
)


def _epochs_until_stopped(steps: int, patience: int = 8, epochs: int = 200,
                          improving: int = 1) -> int:
    """Epochs a `_Record` lets run when the validation IoU improves until epoch
    ``improving``, then never again."""
    record = _Record(queue.Queue(), epochs, steps, True, patience=patience)
    for epoch in range(epochs):
        iou = 0.1 + 0.01 * min(epoch, improving - 1)
        record.epoch_ends(epoch, {"loss": 1.0, "iou": iou, "val_loss": 1.0, "val_iou": iou},
                          lambda: [np.zeros(2, np.float32)])
        if record.halt:
            return epoch + 1
    return epochs


def test_a_plateau_ends_training_only_after_the_minimum_of_batches():
    # 2D-sized epochs: patience alone decides (8 epochs after the best, the first)
    assert _epochs_until_stopped(steps=48) == 9
    # a 3D network's 10-batch epochs: not before MIN_BATCHES_BEFORE_PLATEAU batches
    assert _epochs_until_stopped(steps=10) == MIN_BATCHES_BEFORE_PLATEAU // 10
    assert _epochs_until_stopped(steps=10, patience=None) == 200


def test_patience_counts_at_least_min_patience_batches():
    # 2D-sized epochs: 8 epochs after the best (the 20th) end training
    assert _epochs_until_stopped(steps=48, improving=20) == 28
    # 10-batch epochs: 8 epochs would be 80 batches; MIN_PATIENCE_BATCHES decides
    assert patience_epochs(8, 10) == MIN_PATIENCE_BATCHES // 10
    assert _epochs_until_stopped(steps=10, improving=40) == 40 + MIN_PATIENCE_BATCHES // 10
    assert patience_epochs(8, 48) == 8 and patience_epochs(8, 1) == MIN_PATIENCE_BATCHES


def test_batches_per_call_divide_the_epoch_on_tensorflow_only():
    from napari_unet.backend.runtime import backend_name
    from napari_unet.training.fit_loop import MAX_BATCHES_PER_CALL, batches_per_call

    tensorflow = backend_name() == "tensorflow"
    for steps, expected in [(44, 4), (43, 1), (10, 2), (9, 3), (12, 4), (1, 1)]:
        got = batches_per_call(steps)
        assert got == (expected if tensorflow else 1)
        assert steps % got == 0 and got <= MAX_BATCHES_PER_CALL
    assert batches_per_call(44, parallel=object()) == 1  # data-parallel: one batch per call


def test_batch_events_of_several_batches_per_call_are_passed_on_in_order():
    events = queue.Queue()
    record = _Record(events, 1, 8, False, per_call=4)
    record.epoch_begins(0)
    record.batch_ends(7, {"loss": 0.5, "iou": 0.6})  # the second call ends first
    assert events.empty()
    record.batch_ends(3, {"loss": 0.7, "iou": 0.4})
    got = [events.get_nowait()[1] for _ in range(2)]
    assert [(e.batch, e.logs["loss"]) for e in got] == [(4, 0.7), (8, 0.5)]


def test_a_network_compiled_for_calls_that_do_not_divide_the_epoch_is_refused():
    import pytest

    from napari_unet.training.fit_loop import fit_events

    class Compiled:  # what fit_events reads of a network compiled elsewhere
        steps_per_execution = 4

    with pytest.raises(ValueError, match="does not divide the 10 batches"):
        next(fit_events(Compiled(), iter(()), None, 1, 10, 2, None))


def test_the_outcome_counts_the_batches_trained():
    record = _Record(queue.Queue(), 2, 8, False, per_call=4)
    for epoch in range(2):
        record.epoch_begins(epoch)
        record.batch_ends(3, {"loss": 0.7, "iou": 0.4})
        if epoch == 0:
            record.batch_ends(7, {"loss": 0.5, "iou": 0.6})
    assert record.trained == 12  # the second epoch was stopped after one call


def test_a_non_finite_loss_names_the_batches_of_the_call_it_came_from():
    one = _Record(queue.Queue(), 2, 8, False)
    one.batch_ends(0, {"loss": 0.5, "iou": 0.1})
    one.batch_ends(1, {"loss": float("nan"), "iou": 0.1})
    assert one.halt and one.diverged == "the loss became nan at epoch 1, batch 2"
    four = _Record(queue.Queue(), 2, 8, False, per_call=4)  # logs after a call's 4th batch
    four.batch_ends(3, {"loss": 0.5, "iou": 0.1})
    four.batch_ends(7, {"loss": float("inf"), "iou": 0.1})
    assert four.diverged == "the loss became inf at epoch 1, batches 5-8"
