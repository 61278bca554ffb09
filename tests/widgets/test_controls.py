"""Smaller controls in a real viewer: Cancel for Run, napari's activity dock, patch sizes
on the pooling grid, and the loss plot in napari's theme."""

import numpy as np

from napari_unet.samples.nuclei import make_nuclei

from .conftest import build_tiny, set_fast_training, wait_for_worker


def test_cancel_ends_a_run_with_nothing_added_and_the_next_run_works(viewer_with_widgets, qtbot):
    viewer, w = viewer_with_widgets
    build_tiny(qtbot, w["build"])
    stack = np.stack([make_nuclei((256, 256), seed=s)[0] for s in range(4)])
    viewer.add_image(stack, name="stack")
    run = w["run"]
    run.reset_choices()
    run.image.value = viewer.layers["stack"]
    run.tile_size.value = 96  # 256 windows in batches: many steps to cancel between
    bars = []

    def cancel_at_first_step(event):
        bars.append(run.activity.state)
        if len(bars) == 1:
            run.cancel()

    n_layers = len(viewer.layers)
    run.start()
    assert run.cancel_button.enabled
    run.worker.yielded.connect(cancel_at_first_step)
    wait_for_worker(qtbot, run)
    assert run.last_error == "" and run.status.value.startswith("cancelled")
    assert len(viewer.layers) == n_layers and not run.cancel_button.enabled
    assert bars[0][1] == 256 and run.activity is None  # 256 windows shown, then closed
    assert run.run_button.enabled
    run.tile_size.value = 0
    run.start()
    wait_for_worker(qtbot, run)
    assert run.last_error == "" and "stack U-Net" in viewer.layers


def test_training_shows_in_the_activity_dock(viewer_with_widgets, qtbot):
    _, w = viewer_with_widgets
    train = w["train"]
    build_tiny(qtbot, w["build"])
    set_fast_training(train, epochs=2, steps=3)
    seen = []
    train.start()
    assert "compiling the network" in train.status.value
    train.worker.yielded.connect(
        lambda event: seen.append(train.activity.state[1]) if train.activity else None)
    wait_for_worker(qtbot, train)
    assert train.last_error == ""
    assert seen and seen[-1] == 6 and train.activity is None


def test_patch_size_follows_the_pooling_grid(viewer_with_widgets, qtbot):
    viewer, w = viewer_with_widgets
    train = w["train"]
    train.patch_size.value = 120  # no model yet: the default U-Net pools 4 times
    assert train.patch_size.value == 128 and "multiple of 2**depth = 16" in train.status.value
    build_tiny(qtbot, w["build"])  # depth 2: multiples of 4
    assert train.patch_size.step == 4
    train.patch_size.value = 70
    assert train.patch_size.value == 72


def test_loss_plot_follows_napari_theme(viewer_with_widgets):
    viewer, w = viewer_with_widgets
    plot = w["train"].plot
    viewer.theme = "dark"
    dark = plot.figure.get_facecolor()
    viewer.theme = "light"
    light = plot.figure.get_facecolor()
    assert sum(light[:3]) > sum(dark[:3]) + 1.0
    plot.add_epoch({"loss": 0.5, "iou": 0.2})
    shown = [t for t in plot.loss_ax.get_xticks() if plot.loss_ax.get_xlim()[0] <= t
             <= plot.loss_ax.get_xlim()[1]]
    assert shown == [1.0], shown  # one epoch: one tick, not "0.9 0.95 1.0" overlapping
    plot.add_epoch({"loss": 0.4, "iou": 0.3, "val_loss": 0.45, "val_iou": 0.25})
    assert np.isnan(plot.history["val_loss"][0]) and plot.history["val_loss"][1] == 0.45
    ticks = plot.loss_ax.get_xticks()
    assert np.allclose(ticks, np.round(ticks))  # whole epochs only


def test_run_shows_the_values_for_objects_linked_in_3d_when_they_apply(make_napari_viewer):
    from napari_unet import UNetConfig
    from napari_unet._widgets._controls import SEMANTIC
    from napari_unet._widgets.run import RunWidget
    from napari_unet.model.decoding import Decoding
    from napari_unet.model.summary import ModelSummary

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((32, 32), np.float32), name="plane")
    viewer.add_image(np.zeros((4, 32, 32), np.float32), name="stack")
    run = RunWidget(viewer)
    linked = Decoding(threshold=0.7, seed_threshold=0.6, min_size=80)
    summary = ModelSummary(UNetConfig(n_classes=3), target="boundary",
                           decoding=Decoding(threshold=0.4, min_size=10), linked_decoding=linked)
    run.calibrated.value = True
    run.link_planes.value = False
    run.image.value = viewer.layers["stack"]
    run.session.set_summary(summary, "a boundary model")
    assert abs(run.threshold.value - 0.4) < 1e-9 and run.min_size.value == 10
    run.link_planes.value = True
    assert abs(run.threshold.value - 0.7) < 1e-9 and run.min_size.value == 80
    assert run._settings_used().endswith("min size 80 voxels (for objects linked in 3D)")
    run.image.value = viewer.layers["plane"]  # nothing to link in a plane: its own values
    assert abs(run.threshold.value - 0.4) < 1e-9 and run.min_size.value == 10
    assert run._settings_used().endswith("min size 10 px")
    run.image.value = viewer.layers["stack"]
    run.output.value = SEMANTIC  # a mask links nothing: the per-plane threshold only
    assert abs(run.threshold.value - 0.4) < 1e-9
    assert run._settings_used() == ", the model's threshold 0.4"


def test_train_says_when_training_has_ended_and_calibration_runs(make_napari_viewer):
    from napari_unet._widgets.train import TrainWidget
    from napari_unet.common.progress import TrainProgress

    train = TrainWidget(make_napari_viewer())
    train._on_progress(TrainProgress(3, 3, 10, 10, "epoch", {"loss": 0.2, "val_iou": 0.8}))
    train._on_progress(TrainProgress(3, 3, 10, 10, "calibrate"))
    assert "choosing the label settings" in train.status.value
    assert len(train.plot.history["loss"]) == 1  # no epoch added by it
