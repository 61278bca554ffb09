"""The longest time napari's event loop is blocked while the widgets work (goal: < 0.25 s).

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/bench_gui_freeze.py [--lazy-size 2048]

A QTimer fires every 10 ms in a real napari window; the longest gap between two of
its ticks, minus the 10 ms, is the longest freeze a user would feel. Measured:
1. idle, as the reference;
2. while the Train widget trains a small U-Net (8 filters, depth 3, 4 epochs x 10
   batches of 8 at 128 px) on the 512x512 sample, live plot included;
3. while the Run widget makes a lazy Labels layer of a ``--lazy-size``² dask image
   and fills in the part napari shows (every block predicted in the engine process,
   called from a worker thread; the layer is refreshed as blocks arrive).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def watch(app, until, limit_s: float = 900.0) -> float:
    """Process events until ``until()``; returns the longest tick gap in seconds."""
    from qtpy.QtCore import QTimer

    ticks = [time.perf_counter()]
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(10)
    start = time.perf_counter()
    while not until() and time.perf_counter() - start < limit_s:
        app.processEvents()
        time.sleep(0.002)
    timer.stop()
    gaps = [b - a for a, b in zip(ticks, ticks[1:])] or [0.0]
    return max(gaps) - 0.010


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lazy-size", type=int, default=2048)
    args = parser.parse_args()
    os.environ["NAPARI_UNET_SETTINGS_DIR"] = tempfile.mkdtemp()
    import dask.array as da
    import napari
    import numpy as np
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer()
    viewer.window.resize(1280, 800)
    app = QApplication.instance()
    viewer.open_sample("napari-unet", "nuclei")
    docks = {n: viewer.window.add_plugin_dock_widget("napari-unet", n, tabify=True)[1]
             for n in ("U-Net: Build", "U-Net: Train", "U-Net: Run")}
    build, train, run = docks.values()
    idle_until = time.perf_counter() + 2
    print(f"idle:      longest freeze {watch(app, lambda: time.perf_counter() > idle_until):.3f} s")
    build.start_neurons.value, build.depth.value = 8, 3
    build.build()
    watch(app, lambda: build.session.has_model and not build.session.busy)
    train.image.value = viewer.layers["nuclei"]
    train.labels.value = viewer.layers["nuclei ground truth"]
    train.epochs.value, train.steps.value, train.batch_size.value = 4, 10, 8
    train.start()
    print(f"training:  longest freeze {watch(app, lambda: train.worker is None):.3f} s")
    image = np.asarray(viewer.layers["nuclei"].data)
    reps = -(-args.lazy_size // image.shape[0])
    big = da.from_array(np.tile(image, (reps, reps))[:args.lazy_size, :args.lazy_size],
                        chunks=512)
    viewer.add_image(big, name="lazy")
    run.reset_choices()
    run.image.value = viewer.layers["lazy"]
    run.output.value = "semantic mask"  # filled block by block (instances need whole planes)
    run.start()
    started = time.perf_counter()
    first = {}

    def filled() -> bool:
        if "lazy U-Net" in viewer.layers and "shown" not in first and \
                np.asarray(viewer.layers["lazy U-Net"]._slice.image.raw).any():
            first["shown"] = time.perf_counter() - started
        return run.worker is None and run.fill.fills > 0 and not run.fill.running

    freeze = watch(app, filled)
    drawn_until = time.perf_counter() + 1
    freeze = max(freeze, watch(app, lambda: time.perf_counter() > drawn_until))
    labels = viewer.layers["lazy U-Net"]
    print(f"lazy run {args.lazy_size}²: longest freeze {freeze:.3f} s (first labels on screen "
          f"after {first.get('shown', float('nan')):.1f} s, all {labels.data.chunks_done} "
          f"blocks after {time.perf_counter() - started - 1:.1f} s; status: {run.status.value!r}; "
          f"labelled fraction in view {np.asarray(labels._slice.image.raw).mean():.2f})")
    viewer.close()


if __name__ == "__main__":
    main()
