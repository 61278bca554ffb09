import numpy as np
import pytest

from napari_unet.samples.nuclei import make_nuclei, make_nuclei_stack


def test_deterministic_and_realistic():
    a, la = make_nuclei((128, 128), seed=4)
    b, lb = make_nuclei((128, 128), seed=4)
    c, _ = make_nuclei((128, 128), seed=5)
    assert np.array_equal(a, b) and np.array_equal(la, lb) and not np.array_equal(a, c)
    assert a.dtype == np.uint16 and la.dtype == np.uint16
    assert la.max() >= 10
    inside, outside = a[la > 0].mean(), a[la == 0].mean()
    assert inside > outside * 1.3  # nuclei are brighter than the background
    assert a[la == 0].std() > 2  # noisy, uneven background


def test_some_nuclei_touch():
    from scipy import ndimage as ndi

    _, labels = make_nuclei((256, 256), seed=0)
    grown = ndi.grey_dilation(labels, size=3)
    touching = (grown != labels) & (labels > 0) & (grown > 0)
    assert touching.any()


def test_stack():
    image, labels = make_nuclei_stack((8, 64, 64), seed=1)
    assert image.shape == labels.shape == (8, 64, 64)
    assert labels.max() > 3


def test_bad_shape():
    with pytest.raises(ValueError, match="shape"):
        make_nuclei((4, 4))
