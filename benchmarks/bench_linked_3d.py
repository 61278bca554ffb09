"""Objects linked in 3D: does calibrating on volumes beat reusing the per-plane values?

    python benchmarks/bench_linked_3d.py [--train 4] [--test 2] [--epochs 15] [--steps 30]

Trains the default boundary-aware U-Net on synthetic 3D nuclei stacks
(`make_nuclei_stack`, 16 x 128 x 128, 3D instance labels) and labels other stacks with
objects linked in 3D (``link_planes=True``), decoded three ways from the same
probabilities:

* with the defaults (0.5 / 0.5 / 0, no split);
* with the values calibrated on 2D planes (what linked labels used before);
* with the values calibrated on the held-out Z columns as volumes (``linked_decoding``,
  what linked labels use now).

Prints 3D AP@0.5 and AP@0.75 pooled over the test stacks (one-to-one matching of 3D
objects, `napari_unet.labels.metrics`) and both calibrations.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def pooled(labels_list, truths) -> dict:
    from napari_unet.labels.metrics import average_precision, match_counts

    out = {}
    for t in (0.5, 0.75):
        counts = np.sum([match_counts(p, true, t) for p, true in zip(labels_list, truths)], axis=0)
        out[f"ap@{t:g}"] = round(average_precision(*counts), 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=4, help="training stacks")
    parser.add_argument("--test", type=int, default=2, help="test stacks")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--steps", type=int, default=30, help="batches per epoch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    from napari_unet import UNetConfig, train
    from napari_unet.labels.decode import labels_from_probabilities
    from napari_unet.labels.options import LabelOptions
    from napari_unet.prediction.api import predict
    from napari_unet.samples.nuclei import make_nuclei_stack

    shape = (16, 128, 128)
    train_pairs = [make_nuclei_stack(shape, seed=1 + s) for s in range(args.train)]
    test_pairs = [make_nuclei_stack(shape, seed=1000 + s) for s in range(args.test)]
    t0 = time.perf_counter()
    unet = train([i for i, _ in train_pairs], [t for _, t in train_pairs], UNetConfig(),
                 axes="ZYX", epochs=args.epochs, steps_per_epoch=args.steps, seed=args.seed,
                 verbose=False).model
    seconds = time.perf_counter() - t0
    probs = [predict(unet, i, axes="ZYX") for i, _ in test_pairs]
    truths = [t for _, t in test_pairs]
    settings = {
        "defaults 0.5 / 0.5 / 0": LabelOptions(link_planes=True).for_model(0.5),
        "calibrated on 2D planes": LabelOptions(link_planes=True).for_unet(unet, "YX"),
        "calibrated on volumes (the default)": LabelOptions(link_planes=True).for_unet(unet, "ZYX"),
    }
    results = {}
    for name, options in settings.items():
        labels = [labels_from_probabilities(p, "ZYX", options, "boundary") for p in probs]
        results[name] = pooled(labels, truths)
        print(name, results[name], flush=True)
    results["calibration"] = unet.info.get("calibration")
    results["calibration_linked"] = unet.info.get("calibration_linked")
    results["train_seconds"] = round(seconds)
    print("calibration (planes)", results["calibration"], flush=True)
    print("calibration (volumes)", results["calibration_linked"], flush=True)
    print(f"training {seconds:.0f} s, best epoch {unet.info['best_epoch']}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
