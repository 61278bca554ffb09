"""Shared fixtures: tiny U-Nets (depth 1-2, few filters) keep the suite fast."""

import numpy as np
import pytest

from napari_unet.config import UNetConfig
from napari_unet.sample_data import make_nuclei

TINY = UNetConfig(depth=2, start_neurons=8)


@pytest.fixture(scope="session")
def nuclei():
    """A 96x96 synthetic nuclei image and its instance labels."""
    return make_nuclei((96, 96), seed=3)


@pytest.fixture(scope="session")
def trained_tiny():
    """A tiny U-Net trained briefly on synthetic nuclei (shared, do not modify)."""
    from napari_unet.training import train

    pairs = [make_nuclei((96, 96), seed=s) for s in (10, 11)]
    result = train([p[0] for p in pairs], [p[1] for p in pairs], TINY, patch_size=64,
                   batch_size=4, epochs=6, steps_per_epoch=10, learning_rate=3e-3, seed=0)
    return result.model


@pytest.fixture
def random_tiny():
    """An untrained tiny U-Net (depth 2, 4 filters)."""
    from napari_unet.model import UNetModel

    return UNetModel.new(UNetConfig(depth=2, start_neurons=4))


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
