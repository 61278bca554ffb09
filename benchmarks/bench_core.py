"""Throughput of train() and predict() against plain Keras on the same network, one run.

    .venv/bin/python benchmarks/bench_core.py [--steps 40] [--planes 64] [--repeats 5]

Training: images/s of `train()` (random patches sampled and augmented on the fly from
whole images, masked loss) against `model.fit` on pre-made in-memory patch arrays of the
same network with the same loss, optimizer, batch size and patch size (128 px), for the
two networks `train()` makes of instance labels: the foreground network
(``target="foreground"``: one sigmoid output, 0/1 targets) and the default boundary
network (3 softmax outputs, the boundary classes with the border weights as a second
target channel, class weights in the loss). The reference runs Keras' default of one
batch per call; `train()` runs up to 4 on TensorFlow (`fit_loop.batches_per_call`). The
first 4 batches (graph tracing) are excluded from both; each prediction is timed after an
untimed run of the same stack (JAX compiles once per batch shape). Prediction: Mpx/s of `predict()` on a
stack of 128x128 planes (normalisation, padding and tiling included) against
`model.predict` on the already-normalised array. Labels: Mpx/s of `segment()` (instance
labels, only the maps labels need copied back) against `model.predict` followed by the
same labelling of its probabilities. Prints the ratios (goal >= 1.0 for each, issue #26):
each repeat runs the reference and ours back to back, and a ratio is the median of the
repeats' ratios with their range (this machine drifts by 5-10 % within a run).
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
from napari_unet.labels.targets import border_weights, boundary_classes  # noqa: E402
from napari_unet.training.data import IGNORE, class_weights  # noqa: E402
from napari_unet.training.losses import MaskedCrossentropy, MaskedIoU  # noqa: E402
from napari_unet.training.settings import AUTO_BORDER_WEIGHT, TrainSettings  # noqa: E402

PATCH, BATCH, WARMUP = 128, 8, 4


class BatchClock(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter())


def time_train(images, labels, steps, target):
    times = []

    def on_event(event):
        if event.phase == "batch":
            times.append((event.batch, time.perf_counter()))

    train(images, labels, UNetConfig(), patch_size=PATCH, batch_size=BATCH, epochs=1,
          steps_per_epoch=steps + WARMUP, validation_fraction=0.0, seed=0, callback=on_event,
          target=target)
    (first, t0), (last, t1) = next(e for e in times if e[0] >= WARMUP), times[-1]
    return (last - first) * BATCH / (t1 - t0)


def time_fit(x, y, steps, class_weights=None):
    """img/s of ``model.fit`` of the default U-Net (3 outputs when ``y`` holds the boundary
    classes) on the pre-made patches ``x``, ``y``."""
    config = UNetConfig(n_classes=1 if class_weights is None else 3)
    model = UNetModel.new(config).keras_model
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=MaskedCrossentropy(class_weights),
                  metrics=[MaskedIoU()])
    clock = BatchClock()
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=True, verbose=0, callbacks=[clock])
    return steps * BATCH / (clock.times[-1] - clock.times[WARMUP - 1])


def premade_patches(images, labels, n, target):
    """``n`` random (x, y) patches of the normalised ``images``: y the foreground (0/1), or
    for ``"boundary"`` the classes with the border weights as a second channel (what
    `train()` learns from instance labels by default), and the boundary class weights."""
    rng = np.random.default_rng(0)
    norm, settings = PercentileNormalization(), TrainSettings()
    normalised = [norm.apply(image[None, ..., None])[0, ..., 0] for image in images]
    if target == "boundary":
        targets = [np.stack([boundary_classes(lab, settings.boundary_width),
                             border_weights(lab, AUTO_BORDER_WEIGHT, settings.border_sigma)],
                            axis=-1) for lab in labels]
        weights = class_weights([t[..., 0] for t in targets], 3)
    else:
        targets, weights = [(lab > 0)[..., None] for lab in labels], None
    x = np.empty((n, PATCH, PATCH, 1), np.float32)
    y = np.empty((n, PATCH, PATCH, targets[0].shape[-1]), np.float32)
    for i in range(n):
        j = i % len(images)
        y0, x0 = rng.integers(0, images[j].shape[0] - PATCH + 1, 2)
        x[i, ..., 0] = normalised[j][y0:y0 + PATCH, x0:x0 + PATCH]
        y[i] = targets[j][y0:y0 + PATCH, x0:x0 + PATCH]
    assert not np.any(y[..., 0] == IGNORE)
    return x, y, weights


def time_predict(model, stack):
    predict(model, stack)  # trace (JAX compiles once per batch shape: the same shapes as timed)
    t = time.perf_counter()
    predict(model, stack)
    return stack.size / 1e6 / (time.perf_counter() - t)


def time_keras_predict(model, stack):
    x = PercentileNormalization().apply(stack[..., None])
    model.keras_model.predict(x, batch_size=32, verbose=0)  # trace, with the timed shapes
    t = time.perf_counter()
    model.keras_model.predict(x, batch_size=32, verbose=0)
    return stack.size / 1e6 / (time.perf_counter() - t)


def time_segment(model, stack):
    """Mpx/s of `segment()`: instance labels, only the 0/1 maps copied back (#26)."""
    segment(model, stack, axes="ZYX", min_size=0, threshold=0.5)  # trace, the timed shapes
    t = time.perf_counter()
    segment(model, stack, axes="ZYX", min_size=0, threshold=0.5)
    return stack.size / 1e6 / (time.perf_counter() - t)


def time_keras_segment(model, stack):
    """Mpx/s of `model.predict` on the normalised stack, then the same labels from its
    probabilities on the host."""
    options = LabelOptions(0.5, True, 0).for_unet(model, "ZYX")
    x = PercentileNormalization().apply(stack[..., None])
    model.keras_model.predict(x, batch_size=32, verbose=0)  # trace, with the timed shapes
    t = time.perf_counter()
    probs = model.keras_model.predict(x, batch_size=32, verbose=0)[..., 0]
    labels_from_probabilities(probs, "ZYX", options, model.target)
    return stack.size / 1e6 / (time.perf_counter() - t)


def paired(ours: list[float], ref: list[float]) -> str:
    """``median ratio [lowest-highest]`` of the repeats' ratios, each repeat's two runs back
    to back (so the machine's drift over a run hits both sides of a ratio alike)."""
    ratios = [a / b for a, b in zip(ours, ref)]
    return (f"ratio {statistics.median(ratios):.3f} [{min(ratios):.3f}-{max(ratios):.3f}] "
            "(goal >= 1.0)")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--planes", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    pairs = [make_nuclei((256, 256), seed=s) for s in range(8)]
    images, labels = [p[0] for p in pairs], [p[1] for p in pairs]
    training = {}
    for target in ("foreground", "boundary"):
        x, y, weights = premade_patches(images, labels, (args.steps + WARMUP) * BATCH, target)
        ours_t, ref_t = [], []
        for _ in range(args.repeats):  # interleaved so drift hits both alike
            ref_t.append(time_fit(x, y, args.steps, weights))
            ours_t.append(time_train(images, labels, args.steps, target))
        training[target] = (ours_t, ref_t)

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
          f"keras {keras.__version__} ({keras.backend.backend()}), {args.repeats} repeats; "
          "figures are medians, ratios the median [range] of the repeats' ratios")
    for target, (ours, ref) in training.items():
        print(f"training ({target}) train(): {med(ours):7.2f} img/s   model.fit: {med(ref):7.2f} "
              f"img/s   {paired(ours, ref)}")
    print(f"prediction predict(): {med(ours_p):6.3f} Mpx/s  model.predict: {med(ref_p):6.3f} Mpx/s  "
          f"{paired(ours_p, ref_p)}")
    print(f"labels     segment(): {med(ours_l):6.3f} Mpx/s  model.predict + labels: "
          f"{med(ref_l):6.3f} Mpx/s  {paired(ours_l, ref_l)}")


if __name__ == "__main__":
    main()
