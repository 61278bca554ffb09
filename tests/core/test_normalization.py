"""Percentile normalisation: new float32 arrays, constant images, validated percentiles."""

import numpy as np
import pytest

from napari_unet.normalization import PercentileNormalization


def test_normalisation_returns_new_float32_and_leaves_input_alone():
    img = np.arange(100, dtype=np.uint16).reshape(1, 10, 10, 1)
    before = img.copy()
    out = PercentileNormalization().apply(img)
    assert out.dtype == np.float32 and out is not img
    assert np.array_equal(img, before)
    assert out.min() < 0.05 and 0.95 < out.max() < 1.05


def test_constant_image_normalises_to_zero_without_division_error():
    img = np.full((1, 8, 8, 1), 7.0, np.float32)
    with np.errstate(all="raise"):
        out = PercentileNormalization().apply(img)
    assert np.all(out == 0)


def test_percentiles_are_validated():
    with pytest.raises(ValueError, match="low < high"):
        PercentileNormalization(99, 1)
