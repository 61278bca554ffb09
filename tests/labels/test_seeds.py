import numpy as np
import pytest

from napari_unet.labels.seeds import split_at_necks


def _shapes():
    yy, xx = np.mgrid[:80, :120]
    dumbbell = ((yy - 40) ** 2 + (xx - 35) ** 2 <= 18**2) | ((yy - 40) ** 2 + (xx - 66) ** 2 <= 16**2)
    ellipse = ((yy - 40) / 12.0) ** 2 + ((xx - 60) / 45.0) ** 2 <= 1
    return dumbbell, ellipse


def test_dumbbell_splits_and_elongated_object_does_not():
    dumbbell, ellipse = _shapes()
    assert split_at_necks(dumbbell, 0.6).max() == 2
    assert split_at_necks(ellipse, 0.9).max() == 1
    assert split_at_necks(dumbbell, 0.0).max() == 1  # ratio 0: connected components


def test_split_is_size_free_and_leaves_input_alone():
    dumbbell, _ = _shapes()
    big = np.kron(dumbbell, np.ones((2, 2), bool))
    before = big.copy()
    assert split_at_necks(big, 0.6).max() == 2
    assert np.array_equal(big, before)


def test_bad_ratio_is_refused():
    with pytest.raises(ValueError, match="neck ratio"):
        split_at_necks(np.ones((8, 8), bool), 1.5)
