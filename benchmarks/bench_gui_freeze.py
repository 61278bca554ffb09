"""The longest time napari's event loop is blocked while the widgets work (goal: < 0.25 s).

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/bench_gui_freeze.py \
        [--lazy-size 2048] [--chunk 512] [--outputs "semantic mask,instance labels"]

A QTimer fires every 10 ms in a real napari window; the longest gap between two of
its ticks, minus the 10 ms, is the longest freeze a user would feel. Measured:
1. idle, as the reference;
2. while the Train widget trains a small U-Net (8 filters, depth 3, 4 epochs x 10
   batches of 8 at 128 px) on the 512x512 sample, live plot included;
3. while the Run widget makes a lazy Labels layer of a ``--lazy-size``² dask image
   (``--chunk`` px blocks) and fills in the part napari shows (every block predicted in
   the engine process, called from a worker thread; the layer is refreshed as blocks
   arrive), once for each of ``--outputs`` (semantic masks, then instance labels, whose
   blocks are decoded with a halo).
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


def lazy_run(app, viewer, run, output: str, size: int) -> None:
    """Run ``output`` on the "lazy" layer and print the longest freeze until it is filled."""
    import numpy as np

    from napari_unet._widgets._lazy_fill import progressive_arrays

    for name in [layer.name for layer in viewer.layers if layer.name.startswith("lazy U-Net")]:
        viewer.layers.remove(name)
    run.reset_choices()
    run.image.value = viewer.layers["lazy"]
    run.output.value = output
    fills = run.fill.fills
    run.start()
    started = time.perf_counter()
    first = {}

    def filled() -> bool:
        """True once the fill has ended with nothing queued for 2 s (napari picks the
        resolution level it draws after the layer's first slice, and queues again)."""
        if "lazy U-Net" in viewer.layers and "shown" not in first and \
                np.asarray(viewer.layers["lazy U-Net"]._slice.image.raw).any():
            first["shown"] = time.perf_counter() - started
        idle = run.worker is None and run.fill.fills > fills and not run.fill.running \
            and not any(a.pending for a in run.fill.arrays)
        if not idle:
            first.pop("idle", None)
            return False
        first.setdefault("idle", time.perf_counter())
        return time.perf_counter() - first["idle"] > 2.0

    freeze = watch(app, filled)
    labels = viewer.layers["lazy U-Net"]
    levels = progressive_arrays(labels.data)
    print(f"lazy {output} {size}²: longest freeze {freeze:.3f} s (first labels on screen "
          f"after {first.get('shown', float('nan')):.1f} s, blocks computed per resolution level "
          f"{[(a.chunks_done, int(np.prod(a.lazy.numblocks))) for a in levels]} after "
          f"{first['idle'] - started:.1f} s; status: {run.status.value!r}; "
          f"labelled fraction in view {(np.asarray(labels._slice.image.raw) > 0).mean():.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lazy-size", type=int, default=2048)
    parser.add_argument("--chunk", type=int, default=512)
    parser.add_argument("--outputs", default="semantic mask,instance labels")
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
                        chunks=args.chunk)
    viewer.add_image(big, name="lazy")
    viewer.reset_view()  # the whole plane in view: the worst case for drawing
    for output in args.outputs.split(","):
        lazy_run(app, viewer, run, output, args.lazy_size)
    viewer.close()


if __name__ == "__main__":
    main()
