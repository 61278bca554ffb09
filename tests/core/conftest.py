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
