"""Percentile normalisation: new float32 arrays, constant images, validated percentiles."""

import numpy as np
import pytest

from napari_unet.model.normalization import PercentileNormalization


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


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int8, np.int16])
def test_integer_statistics_by_counting_equal_numpy_percentiles(dtype):
    info = np.iinfo(dtype)
    rng = np.random.default_rng(3)
    planes = rng.integers(info.min, info.max, size=(2, 300, 200, 2), endpoint=True).astype(dtype)
    planes[..., 1] = np.clip(planes[..., 1] // 7, info.min, info.max)  # another distribution
    lo, hi = PercentileNormalization(1.0, 99.8).statistics(planes)
    expected = np.percentile(planes.reshape(-1, 2).astype(np.float64), [1.0, 99.8], axis=0)
    np.testing.assert_allclose(lo, expected[0], rtol=1e-6)
    np.testing.assert_allclose(hi, expected[1], rtol=1e-6)
    assert lo.dtype == np.float32
