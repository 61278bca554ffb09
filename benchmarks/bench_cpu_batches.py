"""Windows per network call on a CPU: `predict()` throughput by batch size, one run.

    KERAS_BACKEND=jax .venv/bin/python benchmarks/bench_cpu_batches.py [--planes 64]

For U-Nets of 8, 16 and 32 first-level filters, Mpx/s of `predict()` on a stack of 128x128
planes with 1 to 32 windows per call, and with the batch napari-unet chooses (None: the
memory budget, capped on JAX's and PyTorch's CPU by
`napari_unet.backend.devices.cpu_call_bytes`). Prints each as a ratio to batch 32 (the
largest batch the memory budget gives these planes, and Keras' default) measured in the
same run, with the activation bytes one call holds
(`napari_unet.model.costs.inference_bytes_per_pixel`): where the best batches of the
three widths hold about the same bytes, that is the call size to cap at.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from napari_unet import UNetConfig, make_nuclei, predict  # noqa: E402
from napari_unet.backend.devices import cpu_call_bytes  # noqa: E402
from napari_unet.model.costs import inference_bytes_per_pixel  # noqa: E402
from napari_unet.model.unet import UNetModel  # noqa: E402

BATCHES = (1, 2, 4, 8, 16, 32)


def mpx_per_s(model: UNetModel, stack: np.ndarray, batch: int | None, repeats: int) -> float:
    """Median Mpx/s of ``repeats`` timed `predict()` runs, after an untimed one (JAX
    compiles once per batch shape)."""
    predict(model, stack, batch_size=batch)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        predict(model, stack, batch_size=batch)
        times.append(time.perf_counter() - t)
    return stack.size / 1e6 / statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--planes", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    stack = np.stack([make_nuclei((128, 128), seed=100 + i)[0] for i in range(args.planes)])
    cap = cpu_call_bytes()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"keras {keras.__version__} ({keras.backend.backend()}); call cap: "
          f"{'none' if cap is None else f'{cap / 2**20:.0f} MiB'}; {args.planes} planes of "
          f"128², median of {args.repeats}")
    for filters in (8, 16, 32):
        model = UNetModel.new(UNetConfig(start_neurons=filters))
        window_mib = inference_bytes_per_pixel(model.config) * 128 * 128 / 2**20
        rates = {b: mpx_per_s(model, stack, b, args.repeats) for b in BATCHES}
        rates[None] = mpx_per_s(model, stack, None, args.repeats)
        best = max(BATCHES, key=rates.get)
        for b, rate in rates.items():
            held = f"{window_mib * b:6.1f} MiB" if b else "  (chosen)"
            print(f"filters {filters:2d}  batch {str(b or 'auto'):>4}  {held}  {rate:6.3f} Mpx/s  "
                  f"ratio to batch 32 {rate / rates[32]:.3f}{'  best' if b == best else ''}")


if __name__ == "__main__":
    main()
