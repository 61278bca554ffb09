"""A new user's first training: every Build and Train default, a time limit, the sample.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/bench_default_training.py [--minutes 2]

In a real napari window (1280x800) with the U-Net dock: Build the classic U-Net, Train
on the 512x512 nuclei sample and its ground truth with only the time limit set, Run with
the defaults. Prints the training seconds the limit counted, batches, whether the
progress bar reached 100 % before training ended, the model's warning (if any), the
Train status, and AP@0.5 of the Run against the sample's truth. The goal (plugin issue
#22): the labels are usable (AP@0.5 > 0.5) or the warning says why not.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=2.0)
    args = parser.parse_args()
    os.environ["NAPARI_UNET_SETTINGS_DIR"] = tempfile.mkdtemp()
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_unet.labels.metrics import evaluate

    viewer = napari.Viewer()
    viewer.window.resize(1280, 800)
    app = QApplication.instance()

    def wait(until) -> None:
        while not until():
            app.processEvents()
            time.sleep(0.01)

    viewer.open_sample("napari-unet", "nuclei")
    _, dock = viewer.window.add_plugin_dock_widget("napari-unet", "U-Net")
    build, train, run = dock.widgets
    build.build()
    wait(lambda: build.session.has_model and not build.session.busy)
    train.reset_choices()
    train.image.value = viewer.layers["nuclei"]
    train.labels.value = viewer.layers["nuclei ground truth"]
    train.time_limit.value = args.minutes
    early = []
    train.progress.changed.connect(lambda v: early.append(
        train.worker is not None and v >= train.progress.max))
    started = time.perf_counter()
    train.start()
    wait(lambda: train.worker is None)
    wall = time.perf_counter() - started
    summary = train.session.summary
    info = summary.info
    batches = sum(r["epochs"] for r in info["rounds"]) * info["steps_per_epoch"]
    run.reset_choices()
    run.image.value = viewer.layers["nuclei"]
    run.start()
    wait(lambda: run.worker is None)
    scores = evaluate(viewer.layers["nuclei U-Net"].data, viewer.layers["nuclei ground truth"].data)
    print(f"time limit {args.minutes:g} min: {info['train_seconds']:.0f} s counted, {wall:.0f} s "
          f"from the click; {batches} batches in {summary.epochs} epochs; bar at 100 % "
          f"before the end: {any(early[:-1])}")
    print(f"warning: {summary.warning or '(none)'}")
    print(f"AP@0.5 of a default Run: {scores['ap@0.5']:.3f} ({scores['n_pred']} objects for "
          f"{scores['n_true']} nuclei)")
    print(f"Train status: {train.status.value}")
    viewer.close()


if __name__ == "__main__":
    main()
