"""Throughput of train() and predict() against plain Keras on the same network, one run.

    .venv/bin/python benchmarks/bench_core.py [--steps 40] [--planes 64] [--repeats 3]

Training: images/s of `train()` (random patches sampled and augmented on the fly from
whole images, masked loss) against `model.fit` on pre-made in-memory patch arrays with
the same loss, optimizer, batch size and patch size (128 px, default U-Net). The first
batches (graph tracing) are excluded from both. Prediction: Mpx/s of `predict()` on a
stack of 128x128 planes (normalisation, padding and tiling included) against
`model.predict` on the already-normalised array. Labels: Mpx/s of `segment()` (instance
labels, only the maps labels need copied back) against `model.predict` followed by the
same labelling of its probabilities. Prints the ratios (goal: training >= 0.95,
prediction and labels >= 1.0); each figure is the median of --repeats runs.
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

from napari_unet import UNetConfig, make_nuclei, predict, segment, train  # noqa: E402
from napari_unet.labels.decode import labels_from_probabilities  # noqa: E402
from napari_unet.labels.options import LabelOptions  # noqa: E402
from napari_unet.model.normalization import PercentileNormalization  # noqa: E402
from napari_unet.model.unet import UNetModel  # noqa: E402
from napari_unet.training.data import IGNORE  # noqa: E402
from napari_unet.training.losses import MaskedCrossentropy, MaskedIoU  # noqa: E402

PATCH, BATCH, WARMUP = 128, 8, 3


class BatchClock(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter())


def time_train(images, labels, steps):
    times = []

    def on_event(event):
        if event.phase == "batch":
            times.append(time.perf_counter())

    train(images, labels, UNetConfig(), patch_size=PATCH, batch_size=BATCH, epochs=1,
          steps_per_epoch=steps + WARMUP, validation_fraction=0.0, seed=0, callback=on_event)
    return steps * BATCH / (times[-1] - times[WARMUP - 1])


def time_fit(x, y, steps):
    model = UNetModel.new(UNetConfig()).keras_model
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=MaskedCrossentropy(),
                  metrics=[MaskedIoU()])
    clock = BatchClock()
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=True, verbose=0, callbacks=[clock])
    return steps * BATCH / (clock.times[-1] - clock.times[WARMUP - 1])


def time_predict(model, stack):
    predict(model, stack[:2])  # trace
    t = time.perf_counter()
    predict(model, stack)
    return stack.size / 1e6 / (time.perf_counter() - t)


def time_keras_predict(model, stack):
    x = PercentileNormalization().apply(stack[..., None])
    model.keras_model.predict(x[:2], verbose=0)
    t = time.perf_counter()
    model.keras_model.predict(x, batch_size=32, verbose=0)
    return stack.size / 1e6 / (time.perf_counter() - t)


def time_segment(model, stack):
    """Mpx/s of `segment()`: instance labels, only the 0/1 maps copied back (#26)."""
    segment(model, stack[:2], axes="ZYX", min_size=0, threshold=0.5)  # trace
    t = time.perf_counter()
    segment(model, stack, axes="ZYX", min_size=0, threshold=0.5)
    return stack.size / 1e6 / (time.perf_counter() - t)


def time_keras_segment(model, stack):
    """Mpx/s of `model.predict` on the normalised stack, then the same labels from its
    probabilities on the host."""
    options = LabelOptions(0.5, True, 0).for_unet(model, "ZYX")
    x = PercentileNormalization().apply(stack[..., None])
    model.keras_model.predict(x[:2], verbose=0)
    t = time.perf_counter()
    probs = model.keras_model.predict(x, batch_size=32, verbose=0)[..., 0]
    labels_from_probabilities(probs, "ZYX", options, model.target)
    return stack.size / 1e6 / (time.perf_counter() - t)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--planes", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    pairs = [make_nuclei((256, 256), seed=s) for s in range(8)]
    images, labels = [p[0] for p in pairs], [p[1] for p in pairs]
    rng = np.random.default_rng(0)
    n = (args.steps + WARMUP) * BATCH
    norm = PercentileNormalization()
    x = np.empty((n, PATCH, PATCH, 1), np.float32)
    y = np.empty((n, PATCH, PATCH, 1), np.float32)
    for i in range(n):
        j = i % len(images)
        y0, x0 = rng.integers(0, 256 - PATCH + 1, 2)
        x[i, ..., 0] = norm.apply(images[j][None, ..., None])[0, y0:y0 + PATCH, x0:x0 + PATCH, 0]
        y[i, ..., 0] = labels[j][y0:y0 + PATCH, x0:x0 + PATCH] > 0
    assert not np.any(y == IGNORE)

    ours_t, ref_t = [], []
    for _ in range(args.repeats):  # interleaved so drift hits both alike
        ref_t.append(time_fit(x, y, args.steps))
        ours_t.append(time_train(images, labels, args.steps))

    model = UNetModel.new(UNetConfig())
    stack = np.stack([make_nuclei((PATCH, PATCH), seed=100 + i)[0] for i in range(args.planes)])
    ours_p, ref_p, ours_l, ref_l = [], [], [], []
    for _ in range(args.repeats):
        ref_p.append(time_keras_predict(model, stack))
        ours_p.append(time_predict(model, stack))
        ref_l.append(time_keras_segment(model, stack))
        ours_l.append(time_segment(model, stack))

    med = statistics.median
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"keras {keras.__version__} ({keras.backend.backend()})")
    print(f"training   train(): {med(ours_t):7.2f} img/s   model.fit: {med(ref_t):7.2f} img/s   "
          f"ratio {med(ours_t) / med(ref_t):.3f} (goal >= 0.95)")
    print(f"prediction predict(): {med(ours_p):6.3f} Mpx/s  model.predict: {med(ref_p):6.3f} Mpx/s  "
          f"ratio {med(ours_p) / med(ref_p):.3f} (goal >= 1.0)")
    print(f"labels     segment(): {med(ours_l):6.3f} Mpx/s  model.predict + labels: "
          f"{med(ref_l):6.3f} Mpx/s  ratio {med(ours_l) / med(ref_l):.3f} (goal >= 1.0)")


if __name__ == "__main__":
    main()
