"""Volumes: a 3D U-Net against the 2D network with objects linked in 3D, same training time.

    python benchmarks/bench_volumes.py [--seconds 240] [--z-steps 1 3] [--json out.json]
    python benchmarks/bench_volumes.py --memory-only
    python benchmarks/bench_volumes.py --z-steps 3 --seed 2 --accuracy-only

Synthetic nuclei volumes made the way a microscope sees them: ellipsoids (a third of them
elongated 2.5-3.5x, every one turned at random) rendered on an isotropic grid, blurred
by a PSF three times longer along Z than across, then sampled every ``z`` planes (Z
steps 1x and 3x the pixel size) with Poisson and read noise. Both networks train for
the same ``--seconds`` on 3 volumes and label 2 others:

* 2D: `UNetConfig(start_neurons=16, depth=3)` on the planes, objects linked across Z
  (``link_planes=True``, 3D-calibrated values, the voxel size given);
* 3D: `UNetConfig.for_spacing((z, 1, 1), start_neurons=8, depth=3)` on (D, 64, 64) patches.

Prints 3D AP@0.5 and AP@0.75 pooled over the test volumes (one-to-one matching of 3D
objects), then the 3D network's prediction speed against plain ``model.predict`` of the
same network on the same volume (voxels/s and their ratio, measured in this run), and the
peak memory of labelling a 128 x 1024 x 1024 uint16 volume (a small 3D network, in a
fresh process) against the input, the output and the memory budget.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
from bench_linked_3d import pooled  # 3D AP@0.5 and AP@0.75 pooled over volumes
from scipy import ndimage as ndi


def make_volume(side: int, z_step: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(image uint16 (Z, side, side), labels uint16)``: see the module docstring."""
    rng = np.random.default_rng(seed)
    shape = (side, side, side)
    labels = np.zeros(shape, np.int32)
    signal = np.zeros(shape, np.float32)
    grid = np.indices(shape, dtype=np.float32)
    centres: list[np.ndarray] = []
    tries = 0
    while len(centres) < side**3 // 9000 and tries < 5000:
        tries += 1
        r = rng.uniform(5.0, 9.0)
        c = rng.uniform(r, side - r, 3)
        if any(np.linalg.norm(c - o) < 1.6 * r for o in centres):
            continue
        centres.append(c)
        long = rng.uniform(2.5, 3.5) if rng.random() < 1 / 3 else rng.uniform(0.9, 1.2)
        semi = r * np.array([long, 1.0, 1.0 / np.sqrt(long)])
        rotation = np.linalg.qr(rng.normal(size=(3, 3)))[0]
        reach = int(np.ceil(semi.max())) + 1
        box = tuple(slice(max(0, int(v) - reach), min(side, int(v) + reach + 1)) for v in c)
        offset = np.stack([g[box] - v for g, v in zip(grid, c)], axis=-1) @ rotation
        inside = (((offset / semi) ** 2).sum(-1) <= 1.0) & (labels[box] == 0)
        labels[box][inside] = len(centres)
        signal[box][inside] = rng.uniform(0.5, 1.5)
    optical = ndi.gaussian_filter(signal, (3.0, 1.0, 1.0)) + 0.1
    sampled = optical[::z_step] * 200.0
    counts = rng.poisson(sampled).astype(np.float32) + rng.normal(100.0, 3.0, sampled.shape)
    return np.clip(counts, 0, 65535).astype(np.uint16), labels[::z_step].astype(np.uint16)


def compare(z_step: int, seconds: float, side: int, seed: int) -> dict:
    """Both networks trained for ``seconds`` on volumes sampled every ``z_step`` planes."""
    from napari_unet import UNetConfig, train
    from napari_unet.labels.options import LabelOptions
    from napari_unet.prediction.api import probabilities_and_labels

    spacing = {"Z": float(z_step), "Y": 1.0, "X": 1.0}
    pairs = [make_volume(side, z_step, seed + k) for k in range(5)]
    images, truths = [p[0] for p in pairs], [p[1] for p in pairs]
    runs = {"2D + linking": (UNetConfig(start_neurons=16, depth=3), 8),
            "3D": (UNetConfig.for_spacing((z_step, 1, 1), start_neurons=8, depth=3), 2)}
    out = {"z_step": z_step, "shape": list(images[0].shape),
           "test_objects": int(sum(len(np.unique(t)) - 1 for t in truths[3:]))}
    for name, (config, batch) in runs.items():
        started = time.perf_counter()
        model = train(images[:3], truths[:3], config, axes="ZYX", patch_size=64,
                      batch_size=batch, time_budget=seconds, seed=seed, verbose=False,
                      spacing=spacing).model
        trained = time.perf_counter() - started
        options = LabelOptions(link_planes=True, spacing=spacing)
        labels = [probabilities_and_labels(model, image, options, axes="ZYX")[1]
                  for image in images[3:]]
        batches = model.info["epochs_run"] * model.info["steps_per_epoch"]
        out[name] = {**pooled(labels, truths[3:]), "batches": batches,
                     "train_seconds": round(trained), "z_unpooled_levels":
                     config.z_unpooled_levels, "parameters": model.keras_model.count_params()}
        print(f"z step {z_step}x, {name}: {out[name]}", flush=True)
    return out


def speed(repeats: int = 3) -> dict:
    """Voxels/s of `predict` against plain ``keras_model.predict`` of one 3D network on
    the same (64, 256, 256) volume, normalised the same way, best of ``repeats``."""
    from napari_unet import UNetConfig, UNetModel
    from napari_unet.prediction.api import predict

    model = UNetModel.new(UNetConfig.for_spacing((3, 1, 1), start_neurons=8, depth=3))
    image = make_volume(192, 3, 99)[0][:64, :, :].copy()
    image = np.ascontiguousarray(np.tile(image, (1, 2, 2))[:, :256, :256])
    stats = model.normalization.statistics(image.reshape(-1, *image.shape[1:], 1))
    x = model.normalization.apply(image[None, ..., None], stats)
    timings = {"predict": [], "keras": []}
    for _ in range(repeats + 1):  # the first of each compiles
        t = time.perf_counter()
        predict(model, image, axes="ZYX")
        timings["predict"].append(time.perf_counter() - t)
        t = time.perf_counter()
        model.keras_model.predict(x, batch_size=1, verbose=0)
        timings["keras"].append(time.perf_counter() - t)
    best = {k: min(v[1:]) for k, v in timings.items()}
    rate = {k: image.size / v for k, v in best.items()}
    return {"voxels": int(image.size), "predict_voxels_per_s": round(rate["predict"]),
            "keras_predict_voxels_per_s": round(rate["keras"]),
            "ratio": round(rate["predict"] / rate["keras"], 3)}


MEMORY_CHILD = """
import resource, sys, time, numpy as np
from napari_unet import UNetConfig, UNetModel
from napari_unet.prediction.api import predict, segment
from napari_unet.prediction.tiling import prediction_memory_budget
from napari_unet.backend.runtime import load_keras
load_keras().utils.set_random_seed(0)  # the same random network (and objects) every run
model = UNetModel.new(UNetConfig.for_spacing((3, 1, 1), start_neurons=4, depth=2))
model.keras_model.predict(np.zeros((1, 8, 64, 64, 1), np.float32), verbose=0)
image = np.random.default_rng(0).integers(100, 400, (128, 1024, 1024), dtype=np.uint16)
before = int(open('/proc/self/statm').read().split()[1]) * resource.getpagesize()  # now, not a peak
t = time.perf_counter()
out = (predict if sys.argv[1] == "probabilities" else segment)(model, image, axes="ZYX")
seconds = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(before, peak, image.nbytes, out.nbytes, prediction_memory_budget(), seconds)
"""


def memory(what: str) -> dict:
    """Peak resident memory of ``what`` (``"probabilities"`` or ``"labels"``) of a
    128 x 1024 x 1024 uint16 volume in a fresh process, against what it must hold: the
    input, the float32 probabilities (and the labels) and the memory budget of the
    network's windows."""
    out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, what], capture_output=True,
                         text=True, check=True).stdout.split()
    before, peak, image, result, budget, seconds = (float(v) for v in out[-6:])
    probabilities = image * 2  # float32 foreground probability per voxel
    needed = image + probabilities + budget + (result if what == "labels" else 0)
    gib = 2**30
    return {"output": what, "volume": [128, 1024, 1024], "seconds": round(seconds),
            "peak_gib": round(peak / gib, 2), "growth_gib": round((peak - before) / gib, 2),
            "input_output_budget_gib": round(needed / gib, 2),
            "within": bool(peak - before <= needed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=240, help="training time per network")
    parser.add_argument("--z-steps", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--side", type=int, default=96, help="isotropic side of each volume")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory-only", action="store_true")
    parser.add_argument("--accuracy-only", action="store_true",
                        help="skip the prediction speed and memory measurements")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    results: dict = {}
    if not args.memory_only:
        results["accuracy"] = [compare(z, args.seconds, args.side, args.seed)
                               for z in args.z_steps]
    if not (args.memory_only or args.accuracy_only):
        results["speed"] = speed()
        print("prediction speed:", results["speed"], flush=True)
    if not args.accuracy_only:
        results["memory"] = [memory(what) for what in ("probabilities", "labels")]
    for row in results.get("memory", []):
        print("memory:", row, flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
