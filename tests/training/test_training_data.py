"""Training data: label encodings, untrainable targets, validation split, patch sampling."""

import numpy as np
import pytest

from napari_unet.training import data as T
from napari_unet.training import sampling as S


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
    train, val = S.validation_split(target, 0.25, 16, rng)
    assert val is not None
    held = val >= 0
    assert 0 < held.mean() < 0.5
    assert np.all(train[held] == T.IGNORE) and np.all(train[~held] == target[~held])
    assert np.all(val[held] == target[held])


def test_sampler_and_augmentation_keep_image_and_target_aligned():
    rng = np.random.default_rng(1)
    img = rng.random((40, 50, 1)).astype(np.float32)
    target = (img[..., 0] > 0.5).astype(np.float32)
    sampler = S.PatchSampler([img], [target], 32, 6, {"flips": True, "elastic": False,
                                                      "intensity": False, "gamma": False,
                                                      "noise": False}, rng)
    x, y = sampler.batch()
    assert x.shape == (6, 32, 32, 1) and y.shape == (6, 32, 32, 1)
    np.testing.assert_array_equal(y[..., 0], (x[..., 0] > 0.5).astype(np.float32))


def _discs(n=4, size=64):
    """A batch of images whose target is exactly where the image is bright (plus IGNORE)."""
    yy, xx = np.mgrid[:size, :size]
    x = np.zeros((n, size, size, 1), np.float32)
    for i in range(n):
        x[i, ..., 0] = ((yy - 20 - 5 * i) ** 2 + (xx - 30) ** 2 < 150).astype(np.float32)
    y = x.copy()
    y[:, :4] = T.IGNORE
    return x, y


def test_elastic_deformation_moves_image_and_target_together():
    from napari_unet.training.augmentation import Augmentation

    x, y = _discs()
    only_elastic = Augmentation(flips=False, intensity=False, gamma=False, noise=False,
                                elastic=True, probability=1.0)
    wx, wy = only_elastic.apply(x, y, np.random.default_rng(3))
    assert not np.array_equal(wy, y)  # it moved
    known = wy >= 0
    agree = np.mean((wx[known] > 0.5) == (wy[known] > 0.5))
    assert agree > 0.98
    assert set(np.unique(wy)) <= {T.IGNORE, 0.0, 1.0}  # classes and IGNORE stay exact
    assert np.array_equal(x, _discs()[0])  # inputs untouched


@pytest.mark.parametrize("shape", [(128, 128), (64, 96), (37, 100)])
def test_elastic_field_is_the_cubic_zoom_of_the_coarse_grid(shape):
    from scipy import ndimage as ndi

    from napari_unet.training.augmentation import _upsampling

    coarse = np.random.default_rng(0).normal(0.0, 10.0, (3, 3))
    zoomed = ndi.zoom(coarse, (shape[0] / 3, shape[1] / 3), order=3, mode="nearest",
                      grid_mode=True)[:shape[0], :shape[1]]
    np.testing.assert_allclose(_upsampling(shape[0], 3) @ coarse @ _upsampling(shape[1], 3).T,
                               zoomed, atol=1e-9)


def test_photometric_augmentations_change_the_image_only():
    from napari_unet.training.augmentation import Augmentation

    x, y = _discs()
    photometric = Augmentation(flips=False, elastic=False, blur=True, probability=1.0)
    px, py = photometric.apply(x, y, np.random.default_rng(0))
    assert np.array_equal(py, y) and not np.allclose(px, x)
    assert px.dtype == np.float32 and np.isfinite(px).all()
    none = Augmentation.from_setting(False)
    assert not none.any and np.array_equal(none.apply(x, y, np.random.default_rng(0))[0], x)
    assert Augmentation().elastic and not Augmentation.from_setting({"elastic": False}).elastic
    with pytest.raises(ValueError, match="Unknown augmentations"):
        Augmentation.from_setting({"rotate": True})
    with pytest.raises(ValueError, match="augment must be"):
        Augmentation.from_setting("yes")


def test_small_images_are_padded_with_ignored_targets():
    img = np.ones((10, 12, 1), np.float32)
    target = np.ones((10, 12), np.float32)
    x, y = S.PatchSampler([img], [target], 16, 2, False, np.random.default_rng(0)).batch()
    assert x.shape == (2, 16, 16, 1)
    assert np.count_nonzero(y == T.IGNORE) == 2 * (16 * 16 - 10 * 12)


def test_the_sampler_shows_focus_pixels_more_often():
    rng = np.random.default_rng(0)
    img = rng.random((64, 64, 1)).astype(np.float32)
    target = np.zeros((64, 64), np.float32)
    focus = np.zeros((64, 64), bool)
    focus[60:, 60:] = True  # a corner the uniform draw rarely centres on

    def corner_share(sampler):
        hits = 0
        for k in range(200):
            x, _ = sampler.batch(np.random.default_rng(k))
            hits += np.count_nonzero(x[..., 0] == img[63, 63, 0])
        return hits

    plain = S.PatchSampler([img], [target], 16, 4, False, rng)
    focused = S.PatchSampler([img], [target], 16, 4, False, rng, [focus])
    assert corner_share(focused) > 2 * corner_share(plain)


def test_border_weights_travel_with_the_targets():
    """A weight channel is cut, flipped, deformed and padded exactly like the target."""
    from napari_unet.training.augmentation import Augmentation

    rng = np.random.default_rng(2)
    img = rng.random((40, 50, 1)).astype(np.float32)
    target = (img[..., 0] > 0.5).astype(np.float32)
    weights = 3.0 * target + 1.0  # a weight that names its class
    every = Augmentation(probability=1.0)
    sampler = S.PatchSampler([img], [target], 64, 4, every, rng, weights=[weights])
    x, y = sampler.batch()
    assert y.shape == (4, 64, 64, 2)
    known = y[..., 0] >= 0
    np.testing.assert_array_equal(y[..., 1][known], 3.0 * y[..., 0][known] + 1.0)
    assert np.all(y[..., 1][~known] == 0)  # padding (the image is smaller than the patch)


def _stack_sources(n, image=0):
    return [T.PlaneSource(image, (), z) for z in range(n)]


def test_linked_stacks_are_runs_of_planes_with_3d_labels():
    from napari_unet.samples.nuclei import make_nuclei_stack

    _, labels = make_nuclei_stack((8, 64, 64), seed=0)
    planes = list(labels)
    assert T.linked_stacks(_stack_sources(8), planes) == [list(range(8))]
    rng = np.random.default_rng(0)
    renumbered = [np.concatenate([[0], rng.permutation(np.arange(1, 200))])[p] for p in planes]
    assert T.linked_stacks(_stack_sources(8), renumbered) == []  # numbered plane by plane
    gap = [s for s in _stack_sources(8) if s.z != 3]  # plane 3 not annotated: runs 0-2, 4-7
    assert T.linked_stacks(gap, [p for z, p in enumerate(planes) if z != 3]) == [[0, 1, 2],
                                                                             [3, 4, 5, 6]]
    flat = [T.PlaneSource(i, (), -1) for i in range(8)]  # 2D images
    assert T.linked_stacks(flat, planes) == []


def test_planes_of_one_stack_hold_out_the_same_blocks():
    rng = np.random.default_rng(0)
    targets = [(rng.random((64, 64)) > 0.5).astype(np.float32) for _ in range(4)]
    images = [np.zeros((64, 64, 1), np.float32) for _ in range(4)]
    train, _ = S.split_validation(images, targets, 0.3, 16, 32, 1, "dense", rng,
                                  groups=["a", "a", "a", "b"])
    held = [t < 0 for t in train]
    assert held[0].any() and np.array_equal(held[0], held[1]) and np.array_equal(held[0], held[2])
    assert held[3].any()


def test_prepare_training_data_says_where_each_plane_comes_from():
    from napari_unet import UNetConfig
    from napari_unet.model.normalization import PercentileNormalization

    stack = np.random.default_rng(0).random((2, 3, 32, 32)).astype(np.float32)
    labels = np.zeros(stack.shape, np.int32)
    labels[:, :, 8:16, 8:16] = 1
    labels[1, 0] = 0  # t = 1, z = 0 has no annotation
    *_, sources = T.prepare_training_data([stack], [labels], UNetConfig(depth=1), "dense",
                                          PercentileNormalization(), ["TZYX"])
    assert sources == [T.PlaneSource(0, (0,), 0), T.PlaneSource(0, (0,), 1),
                       T.PlaneSource(0, (0,), 2), T.PlaneSource(0, (1,), 1),
                       T.PlaneSource(0, (1,), 2)]
