"""The docks fit a laptop screen, messages wrap, and axes follow the chosen layer."""

import numpy as np

from .conftest import WORKER_TIMEOUT_MS, set_fast_training, wait_for_worker


def test_the_three_docks_fit_1280_by_800(viewer_with_widgets, qtbot):
    """Measured on the window's minimum size: showing it would draw with OpenGL, which
    can crash in a test process that also loaded TensorFlow (see tests/conftest.py)."""
    viewer, w = viewer_with_widgets
    w["run"].status.value = "a very long error message that goes on " * 20
    w["build"].status.value = "another long message " * 30
    qtbot.wait(50)
    hint = viewer.window._qt_window.minimumSizeHint()
    assert hint.height() <= 800 and hint.width() <= 1280, hint
    for widget in w.values():  # long messages wrap instead of widening the dock
        assert widget.native.minimumSizeHint().width() < 500, type(widget).__name__


def test_one_dock_holds_build_train_and_run_as_tabs(make_napari_viewer, qtbot):
    """The compact layout: one dock, a tab per widget, each tab the dock's full height
    (three separate docks stack and leave Train and Run a strip at 1280x800)."""
    from napari_unet._widgets import BuildWidget, RunWidget, TrainWidget, UNetDock

    viewer = make_napari_viewer()
    viewer.window.resize(1280, 800)
    dock_widget, dock = viewer.window.add_plugin_dock_widget("napari-unet", "U-Net")
    assert isinstance(dock, UNetDock)
    assert [dock.tabText(i) for i in range(dock.count())] == ["Build", "Train", "Run"]
    assert [type(w) for w in dock.widgets] == [BuildWidget, TrainWidget, RunWidget]
    assert all(dock.widget(i) is w.native for i, w in enumerate(dock.widgets))
    assert dock.build.session is dock.train.session is dock.run.session
    assert dock.minimumSizeHint().height() <= 600, dock.minimumSizeHint()
    assert viewer.window._qt_window.minimumSizeHint().height() <= 800
    dock.setCurrentIndex(2)
    assert dock.currentWidget() is dock.run.native
    viewer.window.remove_dock_widget(dock_widget)  # napari's close button
    qtbot.waitUntil(lambda: all(w.closed for w in dock.widgets), timeout=5000)


def test_changing_the_image_resets_the_axes_guess(viewer_with_widgets):
    viewer, w = viewer_with_widgets
    viewer.add_image(np.zeros((3, 32, 32), np.float32), name="stack")
    for widget in (w["train"], w["run"]):
        widget.reset_choices()
        widget.axes.value = "TYX"
        widget.image.value = viewer.layers["stack"]
        assert widget.axes.value == ""


def test_a_picture_that_looks_rgb_is_refused_with_advice(viewer_with_widgets):
    viewer, w = viewer_with_widgets
    viewer.add_image(np.zeros((64, 64, 3), np.float32), name="odd", rgb=False)
    train = w["train"]
    train.reset_choices()
    train.image.value = viewer.layers["odd"]
    train.labels.value = viewer.layers["truth"]
    train.start()
    assert "RGB" in train.last_error and "axes" in train.last_error
    assert not train.session.busy


def test_a_channel_first_layer_trains_a_two_channel_model(viewer_with_widgets, qtbot):
    viewer, w = viewer_with_widgets
    grey = viewer.layers["nuclei"].data.astype(np.float32)
    viewer.add_image(np.stack([grey, grey[::-1]]), name="two channels")
    train = w["train"]
    train.reset_choices()
    set_fast_training(train, epochs=1, steps=2)
    train.image.value = viewer.layers["two channels"]
    train.axes.value = "CYX"
    train.start()
    wait_for_worker(qtbot, train)
    assert train.last_error == "", train.last_error
    assert train.session.summary.config.in_channels == 2
    run = w["run"]
    run.reset_choices()
    run.image.value = viewer.layers["two channels"]  # guessed: the model takes 2 channels
    run.start()
    qtbot.waitUntil(lambda: run.worker is None, timeout=WORKER_TIMEOUT_MS)
    assert run.last_error == "", run.last_error
    assert viewer.layers["two channels U-Net"].data.shape == grey.shape


def test_channel_axis_layers_train_and_run_as_one_three_channel_image(viewer_with_widgets, qtbot):
    """napari's channel_axis splits a (3, Y, X) image into three layers; chosen together
    (image + more channels) they are the channels of one image, in order."""
    viewer, w = viewer_with_widgets
    grey = viewer.layers["nuclei"].data.astype(np.float32)
    layers = viewer.add_image(np.stack([grey, grey[::-1], grey[:, ::-1]]), channel_axis=0,
                              name=["c0", "c1", "c2"], scale=(0.5, 0.5), translate=(10.0, 20.0))
    train, run = w["train"], w["run"]
    for widget in (train, run):
        widget.reset_choices()
    set_fast_training(train, epochs=1, steps=2)
    train.image.value = layers[0]
    train.channels.value = [layers[1], layers[2]]
    train.start()
    wait_for_worker(qtbot, train)
    assert train.last_error == "", train.last_error
    assert train.session.summary.config.in_channels == 3
    assert train.session.summary.info["calibration"]["spacing"] == {"Y": 0.5, "X": 0.5}
    run.image.value = layers[0]
    run.channels.value = [layers[1], layers[2]]
    run.start()
    qtbot.waitUntil(lambda: run.worker is None, timeout=WORKER_TIMEOUT_MS)
    assert run.last_error == "", run.last_error
    labels = viewer.layers["c0 U-Net"]
    assert labels.data.shape == grey.shape and tuple(labels.scale) == (0.5, 0.5)
    run.channels.value = [layers[1]]  # two channels for a 3-channel model: refused, said
    run.start()
    qtbot.waitUntil(lambda: run.worker is None, timeout=WORKER_TIMEOUT_MS)
    assert "channel" in run.last_error
    other = viewer.add_image(np.zeros((10, 10), np.float32), name="small")
    run.reset_choices()
    run.channels.value = [other]
    run.start()
    assert "one shape" in run.last_error


def test_a_three_plane_layer_run_by_guess_says_how_to_read_it_as_channels(viewer_with_widgets,
                                                                          qtbot):
    from .conftest import build_and_train_tiny

    viewer, w = viewer_with_widgets
    build_and_train_tiny(qtbot, w)
    image = viewer.layers["nuclei"].data
    viewer.add_image(np.stack([image] * 3), name="cyx")
    run = w["run"]
    run.reset_choices()
    run.image.value = viewer.layers["cyx"]
    run.start()
    wait_for_worker(qtbot, run)
    assert "read as Z planes" in run.status.value and "CYX" in run.status.value


def test_each_status_stays_in_view_under_the_scrolling_controls(viewer_with_widgets):
    """Build's status sat below the fold of an 800 px window: an error of Load or Save was
    then only in the toast. Each status is now in a strip under the scroll area."""
    from qtpy.QtCore import QEvent
    from qtpy.QtWidgets import QApplication, QScrollArea

    _, w = viewer_with_widgets
    for widget in w.values():
        strip = widget.native.findChild(QScrollArea, "status_strip")
        assert strip is not None and strip.widget() is widget.status.native
        assert not widget.body.root_native_widget.isAncestorOf(widget.status.native)
        assert widget.native.isAncestorOf(widget.status.native)
        widget.status.value = "a long error message that says what to change " * 12
        assert strip.minimumHeight() == strip.maximumHeight() < 120  # four lines, fixed
        assert widget.status.native.heightForWidth(300) > strip.maximumHeight()
        # what a shown label's new text posts (the window is not shown in tests: OpenGL)
        QApplication.sendEvent(strip.viewport(), QEvent(QEvent.Type.LayoutRequest))
        assert widget.status.native.minimumHeight() > strip.maximumHeight()  # it scrolls
