"""Widget tests: a real napari viewer (under Xvfb via pytest-xvfb), widgets opened through
the plugin manifest, and napari set to fail if a plugin touches the viewer off the main thread."""

import os
import time

import numpy as np
import pytest
from qtpy.QtCore import QTimer

os.environ["NAPARI_ENSURE_PLUGIN_MAIN_THREAD"] = "1"

WORKER_TIMEOUT_MS = 300_000  # a hang guard for workers, not a speed requirement


@pytest.fixture(autouse=True)
def _settings_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_UNET_SETTINGS_DIR", str(tmp_path / "settings"))


@pytest.fixture
def viewer_with_widgets(make_napari_viewer):
    """A viewer with the synthetic 2D sample (cropped to 128 px) and the three widgets docked."""
    viewer = make_napari_viewer()
    from napari_unet.samples.nuclei import make_nuclei

    image, truth = make_nuclei((128, 128), seed=7)
    viewer.add_image(image, name="nuclei", scale=(0.5, 0.5), translate=(10.0, 20.0))
    viewer.add_labels(truth, name="truth", scale=(0.5, 0.5), translate=(10.0, 20.0))
    widgets = {}
    for name in ("U-Net: Build", "U-Net: Train", "U-Net: Run"):
        _, widgets[name.split(": ")[1].lower()] = viewer.window.add_plugin_dock_widget("napari-unet", name)
    for w in widgets.values():
        w.reset_choices()
    return viewer, widgets


def wait_for_worker(qtbot, widget):
    """Wait until ``widget``'s worker (if any) has finished."""
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WORKER_TIMEOUT_MS)


def build_tiny(qtbot, build):
    """Build a depth-2, 8-filter U-Net through the Build widget."""
    build.start_neurons.value = 8
    build.depth.value = 2
    build.build()
    qtbot.waitUntil(lambda: build.session.has_model, timeout=WORKER_TIMEOUT_MS)
    qtbot.waitUntil(lambda: build.build_button.enabled, timeout=WORKER_TIMEOUT_MS)


def set_fast_training(train, epochs=4, steps=10):
    train.image.value = train.viewer.layers["nuclei"]
    train.labels.value = train.viewer.layers["truth"]
    train.patch_size.value = 64
    train.batch_size.value = 4
    train.epochs.value = epochs
    train.steps.value = steps
    train.learning_rate.value = 0.003
    train.validation.value = 0.15


def iou(a, b):
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    return (a & b).sum() / max((a | b).sum(), 1)


class Ticks:
    """Records when a 10 ms Qt timer fires: the longest gap is the longest the GUI's
    event loop was blocked."""

    def __init__(self):
        self.ticks = []
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))

    def __enter__(self):
        import gc

        # objects earlier tests left behind (viewers, TensorFlow) are not collected in the
        # middle of this measurement: it is about what the plugin does on the event loop
        gc.collect()
        gc.freeze()
        self.timer.start()
        return self

    def __exit__(self, *_):
        import gc

        self.timer.stop()
        gc.unfreeze()

    @property
    def longest_gap(self) -> float:
        return float(np.max(np.diff(self.ticks)))


def build_and_train_tiny(qtbot, widgets, epochs=2, steps=5):
    """A tiny U-Net built and briefly trained through the widgets (``widgets``: the
    fixture's dict), for tests of what comes after training."""
    build_tiny(qtbot, widgets["build"])
    set_fast_training(widgets["train"], epochs=epochs, steps=steps)
    widgets["train"].start()
    wait_for_worker(qtbot, widgets["train"])
