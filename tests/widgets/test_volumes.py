"""A 3D network through the widgets: Build it for a stack's voxel size, Train it on a ZYX
layer, Run it: 3D labels on the layer's scale."""

import dask.array as da
import numpy as np

from .conftest import WORKER_TIMEOUT_MS, wait_for_worker
from .test_widgets import _fill_after, _run


def test_build_train_and_run_a_3d_network_on_a_zyx_layer(viewer_with_widgets, qtbot):
    from napari_unet.samples.nuclei import make_nuclei_stack

    viewer, w = viewer_with_widgets
    image, labels = make_nuclei_stack((12, 48, 48), seed=3)
    stack = viewer.add_image(image, name="stack", scale=(2.0, 0.5, 0.5))
    truth = viewer.add_labels(labels, name="stack truth", scale=(2.0, 0.5, 0.5))
    build, train, run = w["build"], w["train"], w["run"]
    build.network.value = "3D (volumes)"
    assert not build.z_ratio.native.isHidden()
    build.z_ratio.value = 4.0
    build.start_neurons.value, build.depth.value = 4, 2
    assert "planes x" in build.summary.value and "1 level" in build.summary.value
    build.build()
    qtbot.waitUntil(lambda: build.session.has_model, timeout=WORKER_TIMEOUT_MS)
    assert build.session.summary.config.ndim == 3
    assert build.session.summary.config.z_unpooled_levels == 1
    for widget in (train, run):
        widget.reset_choices()
    train.image.value, train.labels.value = stack, truth
    train.patch_size.value, train.batch_size.value = 32, 2
    assert "16x32x32 voxels" in train.patch_size.tooltip  # Z pooled on one level of two
    train.epochs.value, train.steps.value = 2, 3
    n_layers = len(viewer.layers)
    train.start()
    wait_for_worker(qtbot, train)
    assert train.last_error == "", train.last_error
    summary = train.session.summary
    assert summary.config.ndim == 3 and summary.target == "boundary"
    assert summary.info["calibration"]["spacing"] == {"Z": 2.0, "Y": 0.5, "X": 0.5}
    assert len(viewer.layers) == n_layers  # no 2D preview layer for a 3D network
    assert "volumes" in train.status.value and "voxels" in train.status.value  # not px
    run.image.value = stack
    run.start()
    qtbot.waitUntil(lambda: run.worker is None, timeout=WORKER_TIMEOUT_MS)
    assert run.last_error == "", run.last_error
    out = viewer.layers["stack U-Net"]
    assert out.data.shape == image.shape and tuple(out.scale) == (2.0, 0.5, 0.5)
    assert "voxels" in run.status.value
    lazy_stack = viewer.add_image(da.from_array(image, chunks=(4, 24, 24)), name="lazy stack",
                                  scale=(2.0, 0.5, 0.5))
    run.reset_choices()
    _fill_after(qtbot, run, lambda: _run(qtbot, run, lazy_stack.name))  # dask: lazy 3D blocks
    assert run.last_error == "", run.last_error
    lazy = viewer.layers["lazy stack U-Net"]
    assert tuple(lazy.scale) == (2.0, 0.5, 0.5) and "lazy" in run.status.value
    assert np.mean((np.asarray(lazy.data) > 0) != (np.asarray(out.data) > 0)) < 1e-3
    run.image.value = viewer.layers["nuclei"]  # a plane: said, in plain words
    run.start()
    qtbot.waitUntil(lambda: run.worker is None, timeout=WORKER_TIMEOUT_MS)
    assert "no Z" in run.last_error
    assert viewer.layers["stack U-Net"] is out and np.asarray(out.data).shape == image.shape
