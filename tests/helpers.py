"""Helpers the tests share: the tiny U-Net config (depth 2, few filters keep the suite fast)
and checks of arrays."""

import numpy as np

from napari_unet.model.config import UNetConfig

TINY = UNetConfig(depth=2, start_neurons=8)


def assert_unchanged(before: np.ndarray, after: np.ndarray) -> None:
    assert before.dtype == after.dtype and np.array_equal(before, after)


def merged_seed_disks() -> tuple[np.ndarray, np.ndarray]:
    """Two touching disks of radius 10 (instance ids 1, 2) and boundary-model probabilities
    (H, W, 3) that call them interior everywhere, seam included: one seed for both."""
    yy, xx = np.mgrid[:40, :60]
    truth = np.zeros((40, 60), np.int32)
    truth[(yy - 20) ** 2 + (xx - 20) ** 2 < 100] = 1
    truth[((yy - 20) ** 2 + (xx - 38) ** 2 < 100) & (truth == 0)] = 2
    probs = np.zeros((40, 60, 3), np.float32)
    probs[..., 0] = 1.0
    probs[truth > 0] = [0.0, 0.9, 0.1]
    return truth, probs


def touching_instances():
    """Three objects: two discs touching along a line, and a rectangle apart."""
    yy, xx = np.mgrid[:48, :72]
    labels = np.zeros((48, 72), np.int32)
    labels[(yy - 20) ** 2 + (xx - 18) ** 2 < 121] = 1
    labels[((yy - 20) ** 2 + (xx - 38) ** 2 < 121) & (labels == 0)] = 2
    labels[32:46, 54:70] = 3
    return labels


def same_objects(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether label images ``a`` and ``b`` hold the same objects (ids may differ; a
    watershed may give a few pixels where two objects touch to the other one)."""
    from napari_unet.labels.metrics import match_counts

    tp, n_a, n_b = match_counts(a, b, 0.9)
    return bool(np.array_equal(a > 0, b > 0) and tp == n_a == n_b)
