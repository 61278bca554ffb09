"""Make the 3D-stack screenshot in docs/images from a real napari window.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/make_3d_screenshots.py

Opens the 3D sample (24 x 256 x 256 nuclei with 3D labels), builds a small U-Net, trains
it on the stack through the Train widget (calibration then also runs on volumes, for
objects linked in 3D), runs it with *link objects in 3D* through the Run widget,
evaluates it against the ground truth and grabs the window in napari's 3D view.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

import make_screenshots
from make_screenshots import _raise_dock, _scroll_to_end, wait

OUT = Path(__file__).parent / "images"


def main() -> None:
    os.environ["NAPARI_UNET_SETTINGS_DIR"] = tempfile.mkdtemp()  # defaults, not your settings
    viewer = napari.Viewer(title="napari-unet: a 3D stack")
    viewer.window.resize(1280, 800)
    app = QApplication.instance()
    viewer.open_sample("napari-unet", "nuclei_3d")
    image, truth = viewer.layers["nuclei 3D"], viewer.layers["nuclei 3D ground truth"]
    _, make_screenshots._TABS = viewer.window.add_plugin_dock_widget("napari-unet", "U-Net")
    build, train, run = make_screenshots._TABS.widgets
    build.start_neurons.value = 8
    build.depth.value = 3
    build.build()
    wait(lambda: build.session.has_model and not build.session.busy, app)
    train.image.value, train.labels.value = image, truth
    train.patch_size.value, train.epochs.value, train.steps.value = 64, 6, 20
    train.start()
    wait(lambda: train.worker is None, app)
    print("train:", train.status.value)
    run.image.value = image
    run.calibrated.value = True
    run.link_planes.value = True
    run.start()
    wait(lambda: run.worker is None, app)
    run.truth.value = truth
    run.start_evaluate()
    wait(lambda: "AP@0.5" in run.scores.value, app)
    print("run:", run.status.value, "|", run.scores.value)
    truth.visible = False
    viewer.layers["nuclei 3D preview"].visible = False
    viewer.dims.ndisplay = 3
    viewer.camera.angles = (0.0, 35.0, 60.0)
    _raise_dock(run)
    _scroll_to_end(run)
    app.processEvents()
    viewer.screenshot(str(OUT / "6_stack_linked_3d.png"), canvas_only=False)
    viewer.close()


if __name__ == "__main__":
    main()
