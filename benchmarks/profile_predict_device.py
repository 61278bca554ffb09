"""Where predict()'s time goes on an accelerator: each step of one 4096² prediction timed alone.

    KERAS_BACKEND=jax python benchmarks/profile_predict_device.py

Prints milliseconds for: statistics, dispatch of the compiled forward pass (which
includes the host->device copy of the raw pixels), waiting for the result on the
device, the device->host copy of the float32 probabilities (a fresh array each
time, so no cached host copy is measured), and the same copy started early with
``copy_to_host_async`` (JAX). Median of 5 runs after a warm-up.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

import numpy as np  # noqa: E402

from napari_unet import UNetConfig  # noqa: E402
from napari_unet.backend.forward import forward_for  # noqa: E402
from napari_unet.backend.runtime import load_keras
from napari_unet.model.unet import UNetModel  # noqa: E402

keras = load_keras()


def main():
    side = int(os.environ.get("SIDE", "4096"))
    image = np.clip(np.random.default_rng(0).normal(1000, 300, (side, side)), 0, None).astype(np.uint16)
    for precision in ("float32", "mixed_bfloat16"):
        model = UNetModel.new(UNetConfig(precision=precision))
        forward = forward_for(model.keras_model)
        x = image[None, ..., None]
        times: dict[str, list[float]] = {}

        def clock(name, fn):
            t = time.perf_counter()
            out = fn()
            times.setdefault(name, []).append((time.perf_counter() - t) * 1e3)
            return out

        for i in range(6):
            stats = clock("statistics", lambda: model.normalization.statistics(x))
            lo = np.asarray(stats[0], np.float32).reshape(1, 1, 1, 1)
            scale = (np.asarray(stats[1], np.float32) - lo).reshape(1, 1, 1, 1)
            handle = clock("dispatch (incl. host->device)", lambda: forward.run(x, lo, scale))
            if keras.backend.backend() == "jax":
                clock("wait for the device", lambda: handle.block_until_ready())
                fresh = handle + 0
                fresh.block_until_ready()
                clock("device->host float32", lambda: np.asarray(fresh))
                early = handle * 1
                early.copy_to_host_async()
                time.sleep(0.05)
                clock("device->host after copy_to_host_async", lambda: np.asarray(early))
            else:
                clock("wait + device->host float32", lambda: forward.fetch(handle))
            if i == 0:
                times.clear()
        print(f"{keras.backend.backend()} {precision} {side}²:")
        for name, values in times.items():
            print(f"  {name:<42} {statistics.median(values):8.1f} ms")


if __name__ == "__main__":
    main()
