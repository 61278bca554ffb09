"""Arrays as given: dtype, size and value checks, label images, axes and planes."""

import numpy as np
import pytest

from napari_unet.common import arrays as A


@pytest.mark.parametrize(
    "image, fragment",
    [
        (np.array([[1.0, np.nan], [0, 0]]), "NaN"),
        (np.zeros((0, 4)), "empty"),
        (np.array([["a", "b"]]), "dtype"),
        (np.ones((4, 4), complex), "dtype"),
    ],
)
def test_bad_images_raise(image, fragment):
    with pytest.raises(ValueError, match=fragment):
        A.check_image(image)


def test_label_checks():
    with pytest.raises(ValueError, match="same size"):
        A.check_labels(np.zeros((4, 5), int), (4, 4))
    # a channels-first image read as 3 Z planes: the message names the axes to set
    with pytest.raises(ValueError, match="set its axes to CYX"):
        A.check_labels(np.zeros((8, 8), int), (3, 8, 8))
    with pytest.raises(ValueError, match="whole numbers"):
        A.check_labels(np.full((4, 4), 0.5), (4, 4))
    assert A.check_labels(np.ones((2, 2), bool), (2, 2)).dtype == np.uint8


@pytest.mark.parametrize(
    "shape, channels, expected",
    [((64, 64), 1, "YX"), ((5, 64, 64), 1, "ZYX"), ((2, 5, 64, 64), 1, "TZYX"),
     ((64, 64, 3), 3, "YXC"), ((5, 64, 64, 3), 3, "ZYXC")],
)
def test_default_axes(shape, channels, expected):
    assert A.default_axes(shape, channels) == expected


def test_axes_validation_and_planes_round_trip():
    with pytest.raises(ValueError, match="letters"):
        A.check_axes("YX", (2, 3, 4))
    with pytest.raises(ValueError, match="order"):
        A.check_axes("YZX", (2, 3, 4))
    arr = np.random.default_rng(0).random((3, 2, 16, 20))
    planes, lead = A.to_planes(arr, "CZYX")
    assert planes.shape == (2, 16, 20, 3) and lead == (2,)
    back = A.from_planes(planes[..., :1], lead)
    assert back.shape == (2, 16, 20, 1)
    np.testing.assert_array_equal(back[..., 0], arr[0])
