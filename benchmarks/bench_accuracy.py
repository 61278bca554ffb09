"""Instance accuracy on crowded synthetic nuclei: Otsu + watershed, the seed 2-class U-Net,
and the boundary-aware U-Net with calibration, trained and tested in one run.

    python benchmarks/bench_accuracy.py [--train 8] [--test 4] [--epochs 25] [--steps 30]
                                        [--border-weight W0]

Training images and test images are different `make_crowded_nuclei` seeds (256 x 256,
about half the area covered, most nuclei touching, irregular outlines). Both U-Nets get the
same architecture (the default), patches, batches, epochs and seed; they differ only in
what they learn:

* ``2-class``: the seed U-Net, foreground from the binary masks (``target="foreground"``),
  labels as connected components (what main did), and also with the distance-transform
  watershed (``split_touching``);
* ``boundary``: background / interior / boundary from the instance labels
  (``target="boundary"``, the default for instance labels), labels by the seeded
  watershed with the thresholds calibrated on the held-out validation blocks.

Prints foreground IoU, AP@0.5 and AP@0.75 (pooled over the test images: TP / (TP + FP +
FN) with one-to-one matching) for each method, and the boundary U-Net's calibration.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def pooled(labels_list, truths) -> dict:
    """Foreground IoU and AP@0.5/0.75 over all test images together."""
    from napari_unet.labels.metrics import average_precision, match_counts

    both = union = 0
    out = {}
    for pred, true in zip(labels_list, truths):
        both += np.count_nonzero((pred > 0) & (true > 0))
        union += np.count_nonzero((pred > 0) | (true > 0))
    out["foreground_iou"] = round(both / union, 3)
    for t in (0.5, 0.75):
        tp = n_pred = n_true = 0
        for pred, true in zip(labels_list, truths):
            a, b, c = match_counts(pred, true, t)
            tp, n_pred, n_true = tp + a, n_pred + b, n_true + c
        out[f"ap@{t:g}"] = round(average_precision(tp, n_pred, n_true), 3)
    return out


def otsu_watershed(image: np.ndarray) -> np.ndarray:
    from skimage.filters import gaussian, threshold_otsu

    from napari_unet.labels.decode import label_mask

    smooth = gaussian(image.astype(np.float32), 1.0)
    return label_mask(smooth > threshold_otsu(smooth), min_size=20, split_touching=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=8, help="training images")
    parser.add_argument("--test", type=int, default=4, help="test images")
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--steps", type=int, default=30, help="batches per epoch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--border-weight", type=float, default=None,
                        help="border_weight of the boundary U-Net (default: train()'s default)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--hard", action="store_true",
                        help="the hard benchmark: one annotated 256 x 512 image, the default "
                             "U-Net against StarDist trained for the same time")
    args = parser.parse_args()
    if args.hard:
        from hard_benchmark import run_hard

        return run_hard(args, pooled)

    from napari_unet import UNetConfig, segment, train
    from napari_unet.samples.nuclei import make_crowded_nuclei

    train_pairs = [make_crowded_nuclei(seed=1 + s) for s in range(args.train)]
    test_pairs = [make_crowded_nuclei(seed=1000 + s) for s in range(args.test)]
    truths = [t for _, t in test_pairs]
    images, labels = [i for i, _ in train_pairs], [t for _, t in train_pairs]
    common = dict(epochs=args.epochs, steps_per_epoch=args.steps, seed=args.seed, verbose=False)
    results = {"otsu + watershed": pooled([otsu_watershed(i) for i, _ in test_pairs], truths)}
    print("otsu + watershed", results["otsu + watershed"], flush=True)

    t0 = time.perf_counter()
    two = train(images, labels, UNetConfig(), target="foreground", **common).model
    seconds = time.perf_counter() - t0
    for name, split in (("2-class U-Net", False), ("2-class U-Net + split_touching", True)):
        results[name] = pooled([segment(two, i, min_size=20, split_touching=split)
                                for i, _ in test_pairs], truths)
        results[name]["train_seconds"] = round(seconds)
        print(name, results[name], flush=True)

    t0 = time.perf_counter()
    extra = {} if args.border_weight is None else {"border_weight": args.border_weight}
    boundary = train(images, labels, UNetConfig(), **common, **extra).model
    seconds = time.perf_counter() - t0
    assert boundary.target == "boundary"
    name = "boundary U-Net, calibrated"
    results[name] = pooled([segment(boundary, i) for i, _ in test_pairs], truths)
    results[name]["train_seconds"] = round(seconds)
    print(name, results[name], flush=True)
    uncalibrated = pooled([segment(boundary, i, threshold=0.5, seed_threshold=0.5, min_size=0)
                           for i, _ in test_pairs], truths)
    results["boundary U-Net, 0.5/0.5/0"] = uncalibrated
    print("boundary U-Net, 0.5/0.5/0", uncalibrated, flush=True)
    print("calibration", boundary.info.get("calibration"), "best epoch",
          boundary.info["best_epoch"], "of", boundary.info["epochs_run"], flush=True)
    results["calibration"] = boundary.info.get("calibration")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
