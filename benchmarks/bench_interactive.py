"""Interactive training: what the live preview costs, and what scribbles reach.

    .venv/bin/python benchmarks/bench_interactive.py [--repeats 3] [--seeds 0 1 2]

1. Preview overhead: the same training (sample nuclei, 512 x 512, depth-3 U-Net,
   128 px patches, 8 epochs x 20 batches) with no preview and with a preview of the
   whole 512 x 512 plane asked for every 1 s (far more often than the widget's default
   5 s, so the 10 % pacing is what limits it). Runs alternate; prints the median
   training time of each and their ratio (goal: <= 1.10), and how many previews came.
2. Scribbles: for each seed, a 256 x 256 nuclei image, strokes on 2 % of its pixels
   (`simulate_scribbles`), a depth-2, 16-filter U-Net trained 10 x 20 batches of 64 px
   patches; prints the foreground IoU against the full ground truth, the instance AP@0.5
   of `segment` with the defaults (touching nuclei split at the distance estimated in
   training) and without the split, and the seconds (``--size 512 --scribbles-only``:
   the sample's size, scribbles only).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def _train_seconds(image, labels, preview) -> tuple[float, int]:
    from napari_unet.common.progress import TrainPreview
    from napari_unet.model.config import UNetConfig
    from napari_unet.training.job import train

    seen = []
    started = time.perf_counter()
    train(image, labels, UNetConfig(depth=3, start_neurons=16), epochs=8, steps_per_epoch=20,
          patch_size=128, batch_size=8, seed=0, target="foreground", calibrate=False,
          patience=None, verbose=False, preview=preview,
          callback=lambda e: seen.append(e) if isinstance(e, TrainPreview) else None)
    return time.perf_counter() - started, len(seen)


def preview_overhead(repeats: int) -> None:
    from napari_unet.samples.nuclei import make_nuclei
    from napari_unet.training.preview import Preview

    image, labels = make_nuclei((512, 512), seed=0)
    _train_seconds(image, labels > 0, None)  # warm-up: imports, first compilation
    times: dict[str, list[float]] = {"none": [], "preview": []}
    counts = []
    for _ in range(repeats):
        times["none"].append(_train_seconds(image, labels > 0, None)[0])
        seconds, n = _train_seconds(image, labels > 0, Preview(every=1.0))
        times["preview"].append(seconds)
        counts.append(n)
    base, with_preview = (statistics.median(times[k]) for k in ("none", "preview"))
    print(f"training without preview: {base:.1f} s (median of {repeats}: "
          f"{', '.join(f'{t:.1f}' for t in times['none'])})")
    print(f"training with a 512x512 preview asked every 1 s: {with_preview:.1f} s "
          f"({', '.join(f'{t:.1f}' for t in times['preview'])}); previews per run: {counts}")
    print(f"ratio (with / without): {with_preview / base:.3f}  (goal <= 1.10)")


def scribble_accuracy(seeds: list[int], size: int) -> None:
    from dataclasses import replace

    from napari_unet.labels.metrics import evaluate
    from napari_unet.model.config import UNetConfig
    from napari_unet.prediction.api import predict, segment
    from napari_unet.samples.nuclei import make_nuclei
    from napari_unet.testing.scribbles import simulate_scribbles
    from napari_unet.training.job import train

    for seed in seeds:
        image, labels = make_nuclei((size, size), seed=seed)
        scribbles = simulate_scribbles(labels, 0.02, seed=seed)
        started = time.perf_counter()
        model = train(image, scribbles, UNetConfig(depth=2, start_neurons=16),
                      label_mode="sparse", patch_size=64, batch_size=8, epochs=10,
                      steps_per_epoch=20, learning_rate=3e-3, validation_fraction=0.0,
                      seed=seed, verbose=False).model
        seconds = time.perf_counter() - started
        mask, truth = predict(model, image) > 0.5, labels > 0
        iou = (mask & truth).sum() / (mask | truth).sum()
        ap = evaluate(segment(model, image), labels)["ap@0.5"]  # defaults: split calibrated
        unsplit = replace(model.decoding, split_distance=0)
        model.update(decoding=unsplit)
        ap_unsplit = evaluate(segment(model, image), labels)["ap@0.5"]
        print(f"seed {seed}: painted {np.mean(scribbles > 0):.2%} of the pixels, foreground "
              f"IoU {iou:.3f}, instance AP@0.5 {ap:.3f} with the defaults (touching objects "
              f"split {model.info['split_estimate']['split_distance']} px apart), "
              f"{ap_unsplit:.3f} unsplit; {labels.max()} nuclei; trained in {seconds:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--size", type=int, default=256, help="side of the nuclei images")
    parser.add_argument("--scribbles-only", action="store_true")
    args = parser.parse_args()
    if not args.scribbles_only:
        preview_overhead(args.repeats)
    scribble_accuracy(args.seeds, args.size)


if __name__ == "__main__":
    main()
