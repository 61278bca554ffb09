"""Tiled prediction against one whole-image model.predict, and peak memory on 8192x8192.

    .venv/bin/python benchmarks/bench_predict.py [--size 2048] [--big 8192]

Every case runs in a fresh Python process (default U-Net, random weights, float32
input) so its peak memory is its own: the peak resident set size (ru_maxrss) minus
the resident set size after imports, model building and a small warm-up call.
Cases: `predict()` with its automatic tile size, `predict()` forced to several
tiles, and `model.predict` on the whole normalised image (the reference), all on
--size^2; then `predict()` on --big^2. Prints Mpx/s, ratios and peak memory.
Goals: tiled throughput >= 0.65x the whole-image pass; peak <= 3 GB for 8192^2.
The --size cases run --repeats times, interleaved; the median run of each is shown.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def run_case(case: str, size: int, tile: int | None) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np

    from napari_unet import predict
    from napari_unet.model.costs import auto_tile_size
    from napari_unet.model.normalization import PercentileNormalization
    from napari_unet.model.unet import UNetModel

    model = UNetModel.new()
    image = np.random.default_rng(0).integers(0, 4000, (size, size)).astype(np.uint16)
    warm = np.zeros((1, 64, 64, 1), np.float32)
    model.keras_model.predict(warm, verbose=0)
    model.keras_model.predict_on_batch(warm)
    baseline = _current_rss_mb()
    t = time.perf_counter()
    if case == "whole":
        x = PercentileNormalization().apply(image[None, ..., None])
        model.keras_model.predict(x, batch_size=1, verbose=0)
        chosen = size
    else:
        predict(model, image, tile_size=tile)
        chosen = tile or auto_tile_size(model.config, shape=(size, size))
    seconds = time.perf_counter() - t
    return {"case": case, "size": size, "tile": chosen, "seconds": seconds,
            "mpx_s": size * size / 1e6 / seconds, "peak_mb": _peak_rss_mb() - baseline}


def spawn(case: str, size: int, tile: int | None = None) -> dict:
    cmd = [sys.executable, __file__, "--case", case, "--size", str(size)]
    if tile:
        cmd += ["--tile", str(tile)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--case")
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--big", type=int, default=8192)
    parser.add_argument("--tile", type=int)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each --size case (median)")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.size, args.tile)))
        return
    runs: dict[str, list[dict]] = {"whole": [], "auto": [], "forced": []}
    for _ in range(args.repeats):  # interleaved, so machine drift hits all cases alike
        runs["whole"].append(spawn("whole", args.size))
        runs["auto"].append(spawn("tiled", args.size))
        runs["forced"].append(spawn("tiled", args.size, tile=1312))

    def median(case: str) -> dict:
        ordered = sorted(runs[case], key=lambda r: r["mpx_s"])
        return ordered[len(ordered) // 2]

    whole, auto, forced = median("whole"), median("auto"), median("forced")
    big = spawn("tiled", args.big)
    for r in (whole, auto, forced, big):
        print(f"{r['case']:6s} {r['size']}^2 tile {r['tile']:5d}: {r['mpx_s']:.3f} Mpx/s "
              f"({r['seconds']:.1f} s), peak {r['peak_mb']:.0f} MB above baseline")
    print(f"ratio predict(auto tiles) / whole-image model.predict: {auto['mpx_s'] / whole['mpx_s']:.3f} (goal >= 0.65)")
    print(f"ratio predict(2x2 tiles of 1312) / whole-image model.predict: {forced['mpx_s'] / whole['mpx_s']:.3f}")
    print(f"peak memory {args.big}^2 predict(): {big['peak_mb'] / 1024:.2f} GB above baseline (goal <= 3 GB)")


if __name__ == "__main__":
    main()
