import numpy as np

from napari_unet.training.losses import MaskedCrossentropy, MaskedDice, MaskedIoU


def test_ignored_pixels_do_not_change_the_loss():
    rng = np.random.default_rng(0)
    y_true = (rng.random((2, 8, 8, 1)) > 0.5).astype(np.float32)
    y_pred = rng.uniform(0.05, 0.95, (2, 8, 8, 1)).astype(np.float32)
    masked = y_true.copy()
    masked[:, :4] = -1
    other_pred = y_pred.copy()
    other_pred[:, :4] = 0.999 - other_pred[:, :4]  # change predictions only where ignored
    for loss in (MaskedCrossentropy(), MaskedDice()):
        a = float(loss(masked, y_pred))
        b = float(loss(masked, other_pred))
        assert abs(a - b) < 1e-6
        assert abs(a - float(loss(y_true, y_pred))) > 1e-4


def test_crossentropy_is_mean_over_annotated_pixels():
    y_true = np.array([[[[1.0], [-1.0]]]], np.float32)
    y_pred = np.array([[[[0.5], [0.9]]]], np.float32)
    assert abs(float(MaskedCrossentropy()(y_true, y_pred)) - np.log(2)) < 1e-5


def test_multiclass_crossentropy_and_iou():
    y_true = np.array([[[[0.0], [2.0], [1.0]]]], np.float32)
    y_pred = np.array([[[[0.8, 0.1, 0.1], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1]]]], np.float32)
    loss = float(MaskedCrossentropy()(y_true, y_pred))
    assert abs(loss + np.log(0.8)) < 1e-5
    m = MaskedIoU()
    m.update_state(y_true, y_pred)
    assert float(m.result()) == 1.0
