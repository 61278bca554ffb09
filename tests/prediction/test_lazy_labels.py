"""Lazy instance labels block by block: same objects as the whole plane, ids that agree
across block borders, no block larger than a block of probabilities."""

import dask.array as da
import numpy as np
import pytest
from skimage.draw import disk

from napari_unet.labels.decode import labels_from_probabilities
from napari_unet.labels.options import LabelOptions
from napari_unet.model.decoding import Decoding
from napari_unet.prediction.lazy_labels import anchor_ids, lazy_labels

from ..helpers import same_objects


def _touching_discs(shape=(256, 320), radius=8, seed=0) -> np.ndarray:
    """Foreground probabilities of pairs of touching discs, one pair per 48 px cell (some
    cells empty), so some pairs straddle the block borders of the tests."""
    rng = np.random.default_rng(seed)
    probs = np.zeros(shape, np.float32)
    for r in range(radius + 2, shape[0] - 2 * radius, 48):
        for c in range(radius + 2, shape[1] - 4 * radius, 48):
            if rng.random() < 0.15:
                continue
            r0, c0 = r + rng.integers(0, 20), c + rng.integers(0, 10)
            for dc in (0, int(1.7 * radius)):
                probs[disk((r0, c0 + dc), radius, shape=shape)] = 0.9
    return probs


def test_anchor_ids_agree_between_overlapping_regions():
    whole = np.zeros((40, 50), np.int32)
    whole[5:12, 20:30] = 3
    whole[25:35, 2:8] = 1
    left = anchor_ids(whole[:, :35], [0, 0], whole.shape)
    right = anchor_ids(whole[:, 15:] * (whole[:, 15:] == 3), [0, 15], whole.shape)
    assert left[8, 25] == right[8, 10] == 1 + np.ravel_multi_index((5, 20), whole.shape)
    assert left[30, 5] == 1 + np.ravel_multi_index((25, 2), whole.shape)


@pytest.mark.parametrize("split", [0, 6])
def test_block_wise_instances_equal_the_whole_plane(split):
    probs = _touching_discs()
    options = LabelOptions(threshold=0.5, min_size=5, split_distance=split)
    eager = labels_from_probabilities(probs, "YX", options.filled(Decoding()))
    lazy = lazy_labels(da.from_array(probs, chunks=64), "YX", options.filled(Decoding()))
    assert lazy.chunks == da.from_array(probs, chunks=64).chunks  # no plane-sized chunk
    computed = lazy.compute()
    assert computed.dtype == np.uint32
    assert len(np.unique(eager)) - 1 == len(np.unique(computed)) - 1 >= 20
    assert same_objects(computed, eager)
    one_by_one = np.block([[lazy.blocks[i, j].compute() for j in range(lazy.numblocks[1])]
                           for i in range(lazy.numblocks[0])])
    np.testing.assert_array_equal(one_by_one, computed)  # as a viewer computes them


def test_block_wise_boundary_instances_and_planes_with_their_own_ids():
    fg = np.stack([_touching_discs(seed=1), _touching_discs(seed=2)])
    probs = np.stack([1 - fg, fg * 0.8, fg * 0.2], axis=-1).astype(np.float32)
    options = LabelOptions(seed_threshold=0.5).filled(Decoding())
    eager = labels_from_probabilities(probs, "TYX", options, "boundary")
    lazy = lazy_labels(da.from_array(probs, chunks=(1, 96, 96, 3)), "TYX", options, "boundary")
    assert lazy.chunks == ((1, 1), (96, 96, 64), (96, 96, 96, 32))
    computed = lazy.compute()
    for plane, expected in zip(computed, eager):
        assert same_objects(plane, expected)
    assert not set(np.unique(computed[0])[1:]) & set(np.unique(computed[1])[1:])


def test_masks_stay_per_block():
    probs = _touching_discs()
    mask = lazy_labels(da.from_array(probs, chunks=64), "YX", LabelOptions(
        threshold=0.5, instances=False).filled(Decoding()))
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask.compute(), probs > 0.5)


def test_an_object_wider_than_the_halo_is_whole_with_the_halo_of_a_model_trained_on_it():
    """A slanted band 241 px wide whose first pixel (its id's anchor) lies 196 px left of a
    block border: cut with the 128 px default halo (the right block does not see that
    pixel), whole and equal to the eager labels with `label_halo` of a model whose
    training labels held an object that wide."""
    from skimage.draw import polygon

    from napari_unet.prediction.lazy_labels import LABEL_HALO, MAX_LABEL_HALO, label_halo

    probs = np.zeros((256, 512), np.float32)
    probs[polygon([30, 50, 200, 180], [60, 60, 300, 300], probs.shape)] = 0.9  # cols 60-300
    probs[disk((60, 420), 10, shape=probs.shape)] = 0.9
    options = LabelOptions(threshold=0.5, min_size=5).filled(Decoding())
    eager = labels_from_probabilities(probs, "YX", options)
    widest = np.ptp(np.nonzero(eager == eager[40, 62])[1]) + 1
    lazy = da.from_array(probs, chunks=256)
    cut = lazy_labels(lazy, "YX", options, halo=label_halo({})).compute()
    assert np.count_nonzero(np.unique(cut[:, :320])) == 2  # one object, two ids
    halo = label_halo({"largest_object_px": int(widest)})
    assert 200 < halo == widest and label_halo({"largest_object_px": None}) == LABEL_HALO
    assert label_halo({"largest_object_px": 10**6}) == MAX_LABEL_HALO
    whole = lazy_labels(lazy, "YX", options, halo=halo).compute()
    assert np.count_nonzero(np.unique(whole)) == 2 and same_objects(whole, eager)
