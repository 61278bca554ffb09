"""The widgets' pure helpers, without a display: layer tuples and lazy data."""

import numpy as np

from napari_unet._widgets._jobs import as_lazy, result_layers
from napari_unet._widgets._layers import without_channel


def test_result_layers_keep_the_placement_and_names():
    labels = np.zeros((4, 5), np.uint8)
    placement = {"scale": (2.0, 0.5), "translate": (1.0, 3.0)}
    (l_data, l_meta, l_kind), (p_data, p_meta, p_kind) = result_layers(
        labels, np.zeros((4, 5), np.float32), "cells", placement)
    assert (l_kind, l_meta["name"], l_meta["scale"]) == ("labels", "cells U-Net", (2.0, 0.5))
    assert (p_kind, p_meta["name"], p_meta["translate"]) == ("image", "cells U-Net probability",
                                                             (1.0, 3.0))
    multiclass = result_layers(labels, np.zeros((4, 5, 3), np.float32), "cells", placement)
    data, meta, _ = multiclass[1]  # classes first: one per slider step, never RGB
    assert data.shape == (3, 4, 5) and meta["scale"] == (1.0, 2.0, 0.5) and meta["rgb"] is False
    assert len(result_layers(labels, None, "cells", placement)) == 1


def test_as_lazy_recognises_dask_and_zarr_only():
    import dask.array as da

    assert as_lazy(np.zeros(3)) is None
    lazy = da.zeros((4, 4), chunks=2)
    assert as_lazy(lazy) is lazy


def test_labels_of_a_channel_first_image_drop_the_channel_placement():
    placement = {"scale": (1.0, 2.0, 0.5), "translate": (0.0, 1.0, 3.0)}
    assert without_channel(placement, "CYX") == {"scale": (2.0, 0.5), "translate": (1.0, 3.0)}
    rgb = {"scale": (2.0, 0.5), "translate": (1.0, 3.0)}  # napari leaves the RGB axis out
    assert without_channel(rgb, "YXC") == rgb


def test_evaluation_matches_objects_within_their_own_plane_or_stack():
    """A time-lapse whose truth keeps its ids over time, and labels numbered anew at each
    time point: scored unit by unit they match; pooled as one volume they would not."""
    from napari_unet._widgets._evaluate import evaluate_job, per_unit

    truth = np.zeros((2, 3, 8, 8), np.int32)  # T, Z, Y, X
    truth[:, :, 1:4, 1:4], truth[:, :, 5:7, 5:7] = 1, 2
    labels = truth.copy()
    labels[1] = np.where(truth[1] > 0, truth[1] + 2, 0)  # ids 3 and 4 at t = 1
    before = labels.copy()
    assert evaluate_job(labels, truth, 3)["ap@0.5"] == 1.0
    assert evaluate_job(labels, truth, 4)["ap@0.5"] < 1.0  # the whole array as one unit
    per_plane = evaluate_job(labels, truth, 2)  # 3D truth against per-plane objects
    assert per_plane["ap@0.5"] == 1.0 and per_plane["n_true"] == 12
    unit_labels, unit_truth = per_unit(labels, truth, 3)
    assert set(np.unique(unit_labels)) == {0, 1, 2, 5, 6}  # t = 1 ids after t = 0 ids
    assert set(np.unique(unit_truth)) == {0, 1, 2, 3, 4}
    assert np.array_equal(labels, before)  # inputs kept


def test_big_planes_get_resolution_levels_down_to_a_thumbnail():
    import dask.array as da

    from napari_unet._widgets._lazy_fill import levels

    small = da.zeros((3, 2048, 1500), chunks=512)
    assert levels(small) == [small]
    shapes = [level.shape for level in levels(da.zeros((2, 8192, 6000), chunks=1024))]
    assert shapes == [(2, 8192, 6000), (2, 4096, 3000), (2, 2048, 1500), (2, 1024, 750),
                      (2, 64, 47)]
