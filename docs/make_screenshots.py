"""Make the walkthrough screenshots in docs/images from a real napari window.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/make_screenshots.py

Opens the 2D sample in a 1280x800 window with the U-Net dock (Build, Train and Run
tabs), builds a small U-Net,
trains it through the Train widget, runs it through the Run widget, shows an error
(saving into a folder that cannot be written), runs it on a 4096² dask image (caught
while the lazy result fills in), and grabs the window after each step
(``viewer.screenshot(canvas_only=False)``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

OUT = Path(__file__).parent / "images"
_TABS = None  # the U-Net dock


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
    viewer.window.resize(1280, 800)
    app = QApplication.instance()
    viewer.open_sample("napari-unet", "nuclei")
    global _TABS
    _, _TABS = viewer.window.add_plugin_dock_widget("napari-unet", "U-Net")
    build, train, run = _TABS.widgets
    app.processEvents()
    viewer.screenshot(str(OUT / "0_docks_fit.png"), canvas_only=False)
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
    _scroll_to_end(train)  # the status and the loss curves are at the bottom of the dock
    app.processEvents()
    viewer.screenshot(str(OUT / "2_trained.png"), canvas_only=False)

    run.image.value = viewer.layers["nuclei"]
    run.calibrated.value = True  # the threshold, seed and min size chosen in training
    run.split_touching.value = False  # a boundary model keeps touching nuclei apart itself
    run.start()
    wait(lambda: run.worker is None, app)
    run.truth.value = viewer.layers["nuclei ground truth"]
    run.start_evaluate()
    wait(lambda: "AP@0.5" in run.scores.value, app)
    viewer.layers["nuclei ground truth"].visible = False
    _raise_dock(run)
    app.processEvents()
    viewer.screenshot(str(OUT / "3_segmented.png"), canvas_only=False)
    build.save_path.value = "/proc/napari-unet.keras"
    build.save()
    wait(lambda: build.worker is None, app)
    _raise_dock(build)
    app.processEvents()
    viewer.screenshot(str(OUT / "4_error.png"), canvas_only=False)
    print("status:", train.status.value, "|", run.status.value, "|", run.scores.value, "|",
          build.status.value)
    _lazy_run(viewer, run, app)
    viewer.close()


def _lazy_run(viewer, run, app) -> None:
    """A lazy Run on a 4096² dask image, caught while its blocks fill in."""
    import dask.array as da
    import numpy as np

    image = np.asarray(viewer.layers["nuclei"].data)
    big = da.from_array(np.tile(image, (8, 8)), chunks=512)
    for layer in viewer.layers:
        layer.visible = False
    viewer.add_image(big, name="4096² dask")
    viewer.reset_view()
    run.reset_choices()
    run.image.value = viewer.layers["4096² dask"]
    run.output.value = "instance labels"
    run.start()
    from napari_unet._widgets._lazy_fill import progressive_arrays

    def computed() -> int:
        return sum(a.chunks_done for a in progressive_arrays(viewer.layers["4096² dask U-Net"].data))

    wait(lambda: run.fill.running and computed() >= 24, app)
    _raise_dock(run)
    _scroll_to_end(run)  # the progress bar and the status
    app.processEvents()
    viewer.screenshot(str(OUT / "5_lazy_run.png"), canvas_only=False)
    print("lazy:", run.status.value)
    run.cancel()
    wait(lambda: not run.fill.running, app)


def _scroll_to_end(widget) -> None:
    """Scroll ``widget``'s controls to their end."""
    bar = widget.body.root_native_widget.verticalScrollBar()
    bar.setValue(bar.maximum())


def _raise_dock(widget) -> None:
    """Bring the tab holding ``widget`` to the front."""
    _TABS.setCurrentWidget(widget.native)


if __name__ == "__main__":
    sys.exit(main())
