import numpy as np
import pytest

from napari_unet.samples.hard_nuclei import SATURATION, make_hard_nuclei


def test_hard_nuclei_has_what_real_images_have():
    image, labels = make_hard_nuclei(seed=2)
    assert image.shape == labels.shape == (256, 512) and image.dtype == np.uint16
    ids = np.unique(labels)[1:]
    assert np.array_equal(ids, np.arange(1, len(ids) + 1))  # consecutive ids
    sizes = np.bincount(labels.ravel())[1:]
    assert np.percentile(sizes, 95) > 3 * np.percentile(sizes, 5)  # sizes vary
    assert (image == SATURATION).any()  # saturated clumps
    border = np.unique(np.r_[labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    assert len(border) > 5  # nuclei cut by the border
    again, _ = make_hard_nuclei(seed=2)
    assert np.array_equal(image, again)


def test_hard_nuclei_refuses_tiny_shapes():
    with pytest.raises(ValueError, match="sides >= 64"):
        make_hard_nuclei((32, 32))
