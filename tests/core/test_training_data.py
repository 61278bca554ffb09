"""Training data: label encodings, untrainable targets, validation split, patch sampling."""

import numpy as np
import pytest

from napari_unet import training_data as T


def test_encodings():
    lab = np.array([[0, 1, 2], [0, 3, 0]])
    np.testing.assert_array_equal(T.encode_targets(lab, 1, "dense"), [[0, 1, 1], [0, 1, 0]])
    np.testing.assert_array_equal(T.encode_targets(lab, 4, "dense"), lab)

    sparse = T.encode_targets(np.array([[0, 1, 2]]), 1, "sparse")
    np.testing.assert_array_equal(sparse, [[-1, 0, 1]])
    with pytest.raises(ValueError, match="has 2 classes"):
        T.encode_targets(lab, 2, "dense")
    with pytest.raises(ValueError, match="Scribble labels contain value 3"):
        T.encode_targets(lab, 1, "sparse")


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
        T.check_targets(targets, 1, mode)


def test_validation_split_holds_out_disjoint_blocks():
    rng = np.random.default_rng(0)
    target = (rng.random((64, 64)) > 0.5).astype(np.float32)
    train, val = T.validation_split(target, 0.25, 16, rng)
    assert val is not None
    held = val >= 0
    assert 0 < held.mean() < 0.5
    assert np.all(train[held] == T.IGNORE) and np.all(train[~held] == target[~held])
    assert np.all(val[held] == target[held])


def test_sampler_and_augmentation_keep_image_and_target_aligned():
    rng = np.random.default_rng(1)
    img = rng.random((40, 50, 1)).astype(np.float32)
    target = (img[..., 0] > 0.5).astype(np.float32)
    sampler = T.PatchSampler([img], [target], 32, 6, True, rng)
    x, y = sampler.batch()
    assert x.shape == (6, 32, 32, 1) and y.shape == (6, 32, 32, 1)
    np.testing.assert_array_equal(y[..., 0], (x[..., 0] > 0.5).astype(np.float32))


def test_small_images_are_padded_with_ignored_targets():
    img = np.ones((10, 12, 1), np.float32)
    target = np.ones((10, 12), np.float32)
    x, y = T.PatchSampler([img], [target], 16, 2, False, np.random.default_rng(0)).batch()
    assert x.shape == (2, 16, 16, 1)
    assert np.count_nonzero(y == T.IGNORE) == 2 * (16 * 16 - 10 * 12)
