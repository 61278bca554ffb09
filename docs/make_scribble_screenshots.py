"""Make the scribble walkthrough screenshots (docs/images/scribble_*.png) in a real napari window.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/make_scribble_screenshots.py

Opens the 512 x 512 nuclei sample, makes a scribble layer through the Train widget and
paints strokes on 2 % of the image into it (drawn by `simulate_scribbles` from the
sample's ground truth, as a user would paint: lines through some nuclei, a few lines
across the background), trains with the live preview on and grabs the window mid-training,
runs with the uncertainty map, paints a second round where the map is brightest,
continues training and runs again. Prints the foreground IoU of each round against the
ground truth. Every picture is ``viewer.screenshot(canvas_only=False)``.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from make_screenshots import OUT, _dock, _raise_dock, wait


def _iou(a, b) -> float:
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    return float((a & b).sum() / max((a | b).sum(), 1))


def main() -> None:
    import os
    import tempfile

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_unet.testing.scribbles import most_uncertain_block, simulate_scribbles

    os.environ["NAPARI_UNET_SETTINGS_DIR"] = tempfile.mkdtemp()
    viewer = napari.Viewer(title="napari-unet: scribbles")
    viewer.window.resize(1280, 800)
    app = QApplication.instance()
    viewer.open_sample("napari-unet", "nuclei")
    truth = viewer.layers["nuclei ground truth"]
    truth.visible = False
    _, train = viewer.window.add_plugin_dock_widget("napari-unet", "U-Net: Train")
    _, run = viewer.window.add_plugin_dock_widget("napari-unet", "U-Net: Run")
    viewer.window._qt_window.tabifyDockWidget(_dock(train), _dock(run))
    _raise_dock(train)

    train.image.value = viewer.layers["nuclei"]
    train.class_names.value = "nucleus"
    train.make_scribble_layer()
    scribbles = viewer.layers["nuclei scribbles"]
    scribbles.data = simulate_scribbles(truth.data, 0.02, seed=0)
    app.processEvents()
    viewer.screenshot(str(OUT / "scribble_1_strokes.png"), canvas_only=False)

    train.patch_size.value, train.batch_size.value = 128, 8
    train.epochs.value, train.steps.value = 12, 20
    train.learning_rate.value, train.validation.value = 0.003, 0.0
    train.preview_every.value = 3
    train.start()
    wait(lambda: train.previews_shown >= 3 or train.worker is None, app)
    app.processEvents()
    viewer.screenshot(str(OUT / "scribble_2_preview.png"), canvas_only=False)
    wait(lambda: train.worker is None, app)

    run.image.value = viewer.layers["nuclei"]
    run.output.value = "semantic mask"
    run.uncertainty.value = True
    run.start()
    wait(lambda: run.worker is None, app)
    first = _iou(viewer.layers["nuclei U-Net"].data, truth.data)
    viewer.layers["nuclei preview"].visible = False
    viewer.layers["nuclei U-Net"].visible = False
    _raise_dock(run)
    app.processEvents()
    viewer.screenshot(str(OUT / "scribble_3_uncertainty.png"), canvas_only=False)

    rows, cols = most_uncertain_block(viewer.layers["nuclei U-Net uncertainty"].data, 128)
    more = np.array(scribbles.data)
    extra = simulate_scribbles(truth.data[rows, cols], 0.03, seed=1)
    region = more[rows, cols]
    region[region == 0] = extra[region == 0]
    scribbles.data = more
    train.epochs.value = 6
    train.start()
    wait(lambda: train.worker is None, app)
    run.uncertainty.value = False
    run.start()
    wait(lambda: run.worker is None, app)
    second = _iou(viewer.layers["nuclei U-Net"].data, truth.data)
    for name in ("nuclei U-Net uncertainty", "nuclei U-Net spread"):
        viewer.layers[name].visible = False
    viewer.layers["nuclei U-Net"].visible = True
    scribbles.visible = False
    _raise_dock(train)
    app.processEvents()
    viewer.screenshot(str(OUT / "scribble_4_final.png"), canvas_only=False)
    print(f"painted {np.mean(scribbles.data > 0):.2%} of the pixels "
          f"(second round in rows {rows.start}-{rows.stop}, columns {cols.start}-{cols.stop}); "
          f"foreground IoU after round 1: {first:.3f}, after round 2: {second:.3f}; "
          f"previews shown: {train.previews_shown}")
    print("status:", train.status.value, "|", run.status.value)
    time.sleep(0.1)
    viewer.close()


if __name__ == "__main__":
    sys.exit(main())
