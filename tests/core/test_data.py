import numpy as np
import pytest

from napari_unet import data as D


def test_normalisation_returns_new_float32_and_leaves_input_alone():
    img = np.arange(100, dtype=np.uint16).reshape(1, 10, 10, 1)
    before = img.copy()
    out = D.PercentileNormalization().apply(img)
    assert out.dtype == np.float32 and out is not img
    assert np.array_equal(img, before)
    assert out.min() < 0.05 and 0.95 < out.max() < 1.05


def test_constant_image_normalises_to_zero_without_division_error():
    img = np.full((1, 8, 8, 1), 7.0, np.float32)
    with np.errstate(all="raise"):
        out = D.PercentileNormalization().apply(img)
    assert np.all(out == 0)


def test_percentiles_are_validated():
    with pytest.raises(ValueError, match="low < high"):
        D.PercentileNormalization(99, 1)


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
        D.check_image(image)


def test_label_checks():
    with pytest.raises(ValueError, match="same size"):
        D.check_labels(np.zeros((4, 5), int), (4, 4))
    with pytest.raises(ValueError, match="whole numbers"):
        D.check_labels(np.full((4, 4), 0.5), (4, 4))
    assert D.check_labels(np.ones((2, 2), bool), (2, 2)).dtype == np.uint8


@pytest.mark.parametrize(
    "shape, channels, expected",
    [((64, 64), 1, "YX"), ((5, 64, 64), 1, "ZYX"), ((2, 5, 64, 64), 1, "TZYX"),
     ((64, 64, 3), 3, "YXC"), ((5, 64, 64, 3), 3, "ZYXC")],
)
def test_default_axes(shape, channels, expected):
    assert D.default_axes(shape, channels) == expected


def test_axes_validation_and_planes_round_trip():
    with pytest.raises(ValueError, match="letters"):
        D.check_axes("YX", (2, 3, 4))
    with pytest.raises(ValueError, match="order"):
        D.check_axes("YZX", (2, 3, 4))
    arr = np.random.default_rng(0).random((3, 2, 16, 20))
    planes, lead = D.to_planes(arr, "CZYX")
    assert planes.shape == (2, 16, 20, 3) and lead == (2,)
    back = D.from_planes(planes[..., :1], lead)
    assert back.shape == (2, 16, 20, 1)
    np.testing.assert_array_equal(back[..., 0], arr[0])


def test_encodings():
    lab = np.array([[0, 1, 2], [0, 3, 0]])
    np.testing.assert_array_equal(D.encode_targets(lab, 1, "dense"), [[0, 1, 1], [0, 1, 0]])
    np.testing.assert_array_equal(D.encode_targets(lab, 4, "dense"), lab)

    sparse = D.encode_targets(np.array([[0, 1, 2]]), 1, "sparse")
    np.testing.assert_array_equal(sparse, [[-1, 0, 1]])
    with pytest.raises(ValueError, match="has 2 classes"):
        D.encode_targets(lab, 2, "dense")
    with pytest.raises(ValueError, match="Scribble labels contain value 3"):
        D.encode_targets(lab, 1, "sparse")


@pytest.mark.parametrize(
    "targets, mode, fragment",
    [
        ([np.zeros((4, 4), np.float32)], "dense", "labels are empty"),
        ([np.ones((4, 4), np.float32)], "dense", "every pixel is foreground"),
        ([np.full((4, 4), -1.0, np.float32)], "sparse", "no annotated pixels"),
        ([np.array([[-1, 0]], np.float32)], "sparse", "paint background strokes"),
    ],
)
def test_untrainable_targets_raise(targets, mode, fragment):
    with pytest.raises(ValueError, match=fragment):
        D.check_targets(targets, 1, mode)


def test_validation_split_holds_out_disjoint_blocks():
    rng = np.random.default_rng(0)
    target = (rng.random((64, 64)) > 0.5).astype(np.float32)
    train, val = D.validation_split(target, 0.25, 16, rng)
    assert val is not None
    held = val >= 0
    assert 0 < held.mean() < 0.5
    assert np.all(train[held] == D.IGNORE) and np.all(train[~held] == target[~held])
    assert np.all(val[held] == target[held])


def test_sampler_and_augmentation_keep_image_and_target_aligned():
    rng = np.random.default_rng(1)
    img = rng.random((40, 50, 1)).astype(np.float32)
    target = (img[..., 0] > 0.5).astype(np.float32)
    sampler = D.PatchSampler([img], [target], 32, 6, True, rng)
    x, y = sampler.batch()
    assert x.shape == (6, 32, 32, 1) and y.shape == (6, 32, 32, 1)
    np.testing.assert_array_equal(y[..., 0], (x[..., 0] > 0.5).astype(np.float32))


def test_small_images_are_padded_with_ignored_targets():
    img = np.ones((10, 12, 1), np.float32)
    target = np.ones((10, 12), np.float32)
    x, y = D.PatchSampler([img], [target], 16, 2, False, np.random.default_rng(0)).batch()
    assert x.shape == (2, 16, 16, 1)
    assert np.count_nonzero(y == D.IGNORE) == 2 * (16 * 16 - 10 * 12)
