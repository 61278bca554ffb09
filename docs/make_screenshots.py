"""Make the walkthrough screenshots in docs/images from a real napari window.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/make_screenshots.py

Opens the 2D sample, docks the three widgets, builds a small U-Net, trains it
through the Train widget, runs it through the Run widget, and grabs the window
after each step (``viewer.screenshot(canvas_only=False)``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

OUT = Path(__file__).parent / "images"


def wait(predicate, app, limit_s=600.0):
    import time

    start = time.time()
    while not predicate():
        app.processEvents()
        time.sleep(0.05)
        if time.time() - start > limit_s:
            raise TimeoutError("worker did not finish")


def main() -> None:
    import os
    import tempfile

    os.environ["NAPARI_UNET_SETTINGS_DIR"] = tempfile.mkdtemp()  # defaults, not your settings
    OUT.mkdir(exist_ok=True)
    viewer = napari.Viewer(title="napari-unet walkthrough")
    viewer.window.resize(1600, 1000)
    app = QApplication.instance()
    viewer.open_sample("napari-unet", "nuclei")
    widgets = {}
    for name in ("U-Net: Build", "U-Net: Train", "U-Net: Run"):
        _, widgets[name] = viewer.window.add_plugin_dock_widget("napari-unet", name, tabify=True)
    build, train, run = widgets.values()
    build.start_neurons.value = 8
    build.depth.value = 3
    _raise_dock(build)
    app.processEvents()
    viewer.screenshot(str(OUT / "1_sample_and_build.png"), canvas_only=False)
    build.build()
    wait(lambda: build.session.has_model and not build.session.busy, app)

    train.image.value = viewer.layers["nuclei"]
    train.labels.value = viewer.layers["nuclei ground truth"]
    train.patch_size.value = 128
    train.epochs.value = 8
    train.steps.value = 15
    train.batch_size.value = 8
    train.learning_rate.value = 0.003
    train.start()
    wait(lambda: train.worker is None, app)
    _raise_dock(train)
    app.processEvents()
    viewer.screenshot(str(OUT / "2_trained.png"), canvas_only=False)

    run.image.value = viewer.layers["nuclei"]
    run.min_size.value = 20
    run.split_touching.value = True
    run.start()
    wait(lambda: run.worker is None, app)
    viewer.layers["nuclei ground truth"].visible = False
    _raise_dock(run)
    app.processEvents()
    viewer.screenshot(str(OUT / "3_segmented.png"), canvas_only=False)
    print("status:", train.status.value, "|", run.status.value)
    viewer.close()


def _raise_dock(widget) -> None:
    """Bring the tab holding ``widget`` to the front (tabs are QDockWidgets)."""
    from qtpy.QtWidgets import QDockWidget

    parent = widget.native.parent()
    while parent is not None and not isinstance(parent, QDockWidget):
        parent = parent.parent()
    if parent is not None:
        parent.show()
        parent.raise_()


if __name__ == "__main__":
    sys.exit(main())
