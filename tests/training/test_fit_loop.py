"""Early stopping and learning-rate halving wait for enough batches (`fit_loop`)."""

import queue

import numpy as np

from napari_unet.training.fit_loop import MIN_BATCHES_BEFORE_PLATEAU, _Record


def _epochs_until_stopped(steps: int, patience: int = 8, epochs: int = 200) -> int:
    """Epochs a `_Record` lets run when the validation IoU never improves after epoch 1."""
    record = _Record(queue.Queue(), epochs, steps, True, patience=patience)
    for epoch in range(epochs):
        record.epoch_ends(epoch, {"loss": 1.0, "iou": 0.1, "val_loss": 1.0, "val_iou": 0.1},
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
