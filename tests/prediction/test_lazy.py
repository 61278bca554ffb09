"""Lazy (dask) prediction: same result as in memory, any scheduler, model loaded once per worker."""

import dask.array as da
import numpy as np
import pytest

from napari_unet import predict, segment
from napari_unet.model.config import UNetConfig
from napari_unet.model.decoding import Decoding
from napari_unet.model.unet import UNetModel

from ..helpers import same_objects


@pytest.fixture(scope="module")
def model():
    return UNetModel.new(UNetConfig(depth=2, start_neurons=4))


@pytest.mark.parametrize("shape, axes, chunks", [
    ((203, 157), "YX", (64, 48)),
    ((3, 150, 170), "ZYX", (1, 70, 90)),
    ((2, 2, 70, 90), "TZYX", (1, 2, 40, 40)),
])
def test_dask_in_gives_dask_out_equal_to_in_memory(model, shape, axes, chunks):
    image = np.random.default_rng(0).random(shape).astype(np.float32)
    lazy = predict(model, da.from_array(image, chunks=chunks), axes=axes)
    assert isinstance(lazy, da.Array) and lazy.shape == shape and lazy.dtype == np.float32
    assert np.abs(lazy.compute() - predict(model, image, axes=axes)).max() <= 1e-4


def test_rgb_and_multiclass_lazy():
    image = np.random.default_rng(1).random((100, 120, 3)).astype(np.float32)
    rgb = UNetModel.new(UNetConfig(depth=2, start_neurons=4, in_channels=3, n_classes=3))
    lazy = predict(rgb, da.from_array(image, chunks=(50, 60, 3)), axes="YXC")
    assert lazy.shape == (100, 120, 3)
    np.testing.assert_allclose(lazy.compute(), predict(rgb, image, axes="YXC"), atol=1e-4)
    classes = segment(rgb, da.from_array(image, chunks=(50, 60, 3)), axes="YXC")
    assert isinstance(classes, da.Array)
    assert same_objects(classes.compute(), segment(rgb, image, axes="YXC"))


def test_lazy_labels(model):
    image = np.random.default_rng(2).random((2, 90, 110)).astype(np.float32)
    lazy = da.from_array(image, chunks=(1, 45, 55))
    mask = segment(model, lazy, instances=False, threshold=0.5)
    assert isinstance(mask, da.Array) and mask.dtype == np.uint8
    np.testing.assert_array_equal(mask.compute(), segment(model, image, instances=False, threshold=0.5))
    labels = segment(model, lazy, threshold=0.5).compute()
    ref = segment(model, image, threshold=0.5)
    np.testing.assert_array_equal(labels > 0, ref > 0)


def test_zarr_on_a_distributed_cluster_loads_the_model_once_per_worker(model, tmp_path):
    distributed = pytest.importorskip("distributed")
    zarr = pytest.importorskip("zarr")
    from napari_unet.prediction.lazy import loads_in_this_process

    image = np.random.default_rng(3).random((2, 200, 180)).astype(np.float32)
    store = str(tmp_path / "image.zarr")
    z = zarr.open_array(store, mode="w", shape=image.shape, chunks=(1, 64, 64), dtype="f4")
    z[:] = image
    lazy = predict(model, da.from_zarr(store), axes="ZYX", chunk=64)
    assert lazy.npartitions >= 8
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        result = client.compute(lazy).result()
        loads = client.run(loads_in_this_process)
    assert np.abs(result - predict(model, image, axes="ZYX")).max() <= 1e-4
    assert sorted(loads.values()) and all(n <= 1 for n in loads.values())
    assert sum(loads.values()) >= 1


def test_lazy_labels_of_a_boundary_model_equal_the_eager_ones():
    boundary = UNetModel.new(UNetConfig(depth=2, start_neurons=4, n_classes=3), target="boundary",
                             decoding=Decoding(seed_threshold=0.34))
    image = np.random.default_rng(3).random((2, 90, 110)).astype(np.float32)
    lazy = da.from_array(image, chunks=(1, 45, 55))
    for instances in (True, False):
        eager = segment(boundary, image, instances=instances)
        lazy_labels = segment(boundary, lazy, instances=instances)
        assert isinstance(lazy_labels, da.Array)
        computed = lazy_labels.compute()
        for plane, expected in zip(computed, eager):  # lazy ids name where objects lie
            assert same_objects(plane, expected)


@pytest.mark.parametrize("config, shape, axes, chunks", [
    (UNetConfig(ndim=3, depth=1, start_neurons=2), (62, 44, 36), "ZYX", (12, 20, 36)),
    (UNetConfig.for_spacing((3, 1, 1), depth=2, start_neurons=2, n_classes=3), (2, 60, 40, 36),
     "TZYX", (1, 20, 24, 20)),
])
def test_a_3d_network_on_dask_volumes_cut_along_z_equals_in_memory(config, shape, axes, chunks):
    from napari_unet.model.costs import halos

    unet = UNetModel.new(config)
    image = np.random.default_rng(4).random(shape).astype(np.float32)
    lazy = predict(unet, da.from_array(image, chunks=chunks), axes=axes)
    iz = axes.index("Z")
    assert len(lazy.chunks[iz]) > 1, "the volume must be cut along Z for this test"
    assert min(lazy.chunks[iz]) >= halos(config)[0]
    np.testing.assert_allclose(lazy.compute(), predict(unet, image, axes=axes), atol=1e-4)
    labels = segment(unet, da.from_array(image, chunks=chunks), axes=axes)
    assert isinstance(labels, da.Array)
    assert same_objects(labels.compute(), segment(unet, image, axes=axes))


def test_a_3d_network_refuses_dask_planes_without_z():
    unet = UNetModel.new(UNetConfig(ndim=3, depth=1, start_neurons=2))
    with pytest.raises(ValueError, match="no Z"):
        predict(unet, da.zeros((64, 64), chunks=32), axes="YX")
