"""train() and predict() against plain Keras on whatever device the Keras backend uses.

    KERAS_BACKEND=jax .venv/bin/python benchmarks/bench_devices.py [--quick] [--json out.json]

One run, one backend, one device. Prints, with each ratio:
- training: images/s of `train()` (patches sampled and augmented on the fly) and
  of `model.fit` on in-memory patch arrays, same network, loss, optimizer, batch
  (8 and 32) and patch size (128 px); the first batches (compilation) excluded;
- prediction: Mpx/s of `predict()` (statistics, normalisation, tiling included)
  and of `model.predict` on the already-normalised array, for 64 planes of 512²
  and one 4096² uint16 image;
- labels: Mpx/s of `segment()` (the forward pass ends on the device with the map labels
  are decoded from; instance labels of the untrained network at threshold 0.5) and of
  `predict()` with probabilities copied back as bfloat16 or uint8;
- the ceiling: the compiled forward pass alone on input already on the device;
- all of it again with ``precision="mixed_bfloat16"`` where a GPU supports it.
``--quick`` shrinks every size for a smoke test on a CPU. Each figure is the best
of ``--repeats`` runs (the device is shared with nothing else; the best run is
the least disturbed one).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

import numpy as np  # noqa: E402
from bench_core import BatchClock  # noqa: E402  (this folder is on sys.path when run)

from napari_unet import UNetConfig, make_nuclei, predict, segment, train  # noqa: E402
from napari_unet.backend.devices import describe_device, resolve_precision  # noqa: E402
from napari_unet.backend.runtime import load_keras, make_adam
from napari_unet.model.costs import halo  # noqa: E402
from napari_unet.model.normalization import PercentileNormalization  # noqa: E402
from napari_unet.model.unet import UNetModel  # noqa: E402
from napari_unet.training.losses import MaskedCrossentropy, MaskedIoU  # noqa: E402

keras = load_keras()
PATCH, WARMUP = 128, 5
RESULTS: dict[str, float] = {}


def best(fn, repeats):
    return max(fn() for _ in range(repeats))


def training_data(n_images, side):
    pairs = [make_nuclei((side, side), seed=s) for s in range(n_images)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def time_train(images, labels, config, batch, steps):
    times = []

    def on_event(event):
        if event.phase == "batch":
            times.append(time.perf_counter())

    train(images, labels, config, patch_size=PATCH, batch_size=batch, epochs=1,
          steps_per_epoch=steps + WARMUP, validation_fraction=0.0, seed=0, callback=on_event,
          verbose=False)
    return steps * batch / (times[-1] - times[WARMUP - 1])


def time_fit(images, labels, config, batch, steps):
    rng = np.random.default_rng(0)
    n = (steps + WARMUP) * batch
    norm = PercentileNormalization()
    normalised = [norm.apply(im[None, ..., None])[0, ..., 0] for im in images]
    x = np.empty((n, PATCH, PATCH, 1), np.float32)
    y = np.empty((n, PATCH, PATCH, 1), np.float32)
    side = images[0].shape[0]
    for i in range(n):
        j = i % len(images)
        y0, x0 = rng.integers(0, side - PATCH + 1, 2)
        x[i, ..., 0] = normalised[j][y0:y0 + PATCH, x0:x0 + PATCH]
        y[i, ..., 0] = labels[j][y0:y0 + PATCH, x0:x0 + PATCH] > 0
    model = UNetModel.new(config).keras_model
    model.compile(optimizer=make_adam(1e-3), loss=MaskedCrossentropy(), metrics=[MaskedIoU()])
    clock = BatchClock()
    model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0, callbacks=[clock])
    return steps * batch / (clock.times[-1] - clock.times[WARMUP - 1])


def time_predict(model, image, labels=False, **options):
    """Mpx/s of `predict` (with ``labels``: `segment`, instance labels from the maps
    reduced on the device) on ``image``, compiled first."""
    run = segment if labels else predict
    run(model, image, **options)  # compiles for these shapes
    start = time.perf_counter()
    run(model, image, **options)
    return image.size / 1e6 / (time.perf_counter() - start)


def time_keras_predict(model, image, batch):
    x = PercentileNormalization().apply(image.reshape(-1, *image.shape[-2:])[..., None])
    model.keras_model.predict(x[:batch], batch_size=batch, verbose=0)
    start = time.perf_counter()
    model.keras_model.predict(x, batch_size=batch, verbose=0)
    return image.size / 1e6 / (time.perf_counter() - start)


def time_ceiling(model, image, batch):
    """Mpx/s of the compiled forward pass on normalised input already on the device."""
    x = PercentileNormalization().apply(image.reshape(-1, *image.shape[-2:])[..., None])[:batch]
    km = model.keras_model
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        fn = jax.jit(lambda tv, ntv, x: km.stateless_call(tv, ntv, x, training=False)[0])
        tv = [v.value for v in km.trainable_variables]
        ntv = [v.value for v in km.non_trainable_variables]
        xd = jax.device_put(x)
        fn(tv, ntv, xd).block_until_ready()
        start, reps = time.perf_counter(), 5
        for _ in range(reps):
            out = fn(tv, ntv, xd)
        out.block_until_ready()
    elif backend == "torch":
        import torch

        xd = keras.ops.convert_to_tensor(x)
        with torch.no_grad():
            km(xd, training=False)
            torch.cuda.synchronize() if torch.cuda.is_available() else None
            start, reps = time.perf_counter(), 5
            for _ in range(reps):
                out = km(xd, training=False)
            torch.cuda.synchronize() if torch.cuda.is_available() else None
    else:
        import tensorflow as tf

        fn = tf.function(lambda x: km(x, training=False),
                         jit_compile=bool(tf.config.list_physical_devices("GPU")))
        xd = tf.constant(x)
        fn(xd).numpy()
        start, reps = time.perf_counter(), 5
        for _ in range(reps):
            out = fn(xd)
        out.numpy()
    return reps * x.size / 1e6 / (time.perf_counter() - start)


def peak_bytes_per_pixel(model, image):
    """Peak device memory of one forward pass over ``image`` (normalised, on the device)
    per input pixel: what `napari_unet.model.costs` must budget for."""
    backend = keras.backend.backend()
    x = PercentileNormalization().apply(image[None, ..., None])
    if backend == "torch":
        import torch

        xd = keras.ops.convert_to_tensor(x)
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        with torch.no_grad():
            model.keras_model(xd, training=False)
        return (torch.cuda.max_memory_allocated() - base) / x.size
    if backend == "jax":
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        return stats.get("peak_bytes_in_use", float("nan")) / x.size  # process peak: an upper bound
    return float("nan")


def transfer_gbps(image):
    """GB/s of copying ``image`` (its own dtype) to the device and a float32 array of its
    size back: the two copies `predict()` cannot avoid, timed alone."""
    backend = keras.backend.backend()
    out = np.zeros(image.shape, np.float32)
    if backend == "jax":
        import jax

        up = lambda: jax.device_put(image).block_until_ready()  # noqa: E731
        dev = jax.device_put(out)
        down = lambda: np.asarray(dev)  # noqa: E731
    elif backend == "torch":
        import torch

        up = lambda: (torch.from_numpy(image.astype(np.int32)).cuda(), torch.cuda.synchronize())  # noqa: E731
        dev = torch.from_numpy(out).cuda()
        down = lambda: dev.cpu().numpy()  # noqa: E731
    else:
        return float("nan"), float("nan")
    up(), down()
    t0 = time.perf_counter()
    up()
    t1 = time.perf_counter()
    down()
    t2 = time.perf_counter()
    return image.nbytes / 1e9 / (t1 - t0), out.nbytes / 1e9 / (t2 - t1)


def record(name, value, unit):
    RESULTS[name] = round(float(value), 2)
    print(f"  {name:<44} {value:10.1f} {unit}", flush=True)


def ratio(name, ours, ref, goal=""):
    if ours in RESULTS and ref in RESULTS:
        RESULTS[name] = round(RESULTS[ours] / RESULTS[ref], 3)
        print(f"  {name:<44} {RESULTS[name]:10.3f} {goal}", flush=True)


def attempt(label, fn):
    try:
        fn()
    except Exception:  # noqa: BLE001 - one failed measurement must not end the run
        print(f"  {label} FAILED:\n" + traceback.format_exc(limit=3), flush=True)


def run_precision(precision, args, images, labels, stack, big):
    config = UNetConfig(precision=precision)
    tag = resolve_precision(precision)
    print(f"precision {tag}", flush=True)
    for batch in ([] if args.skip_train else args.batches):
        steps = args.steps
        attempt(f"train b{batch}", lambda: record(
            f"{tag} train() b{batch} img/s", best(lambda: time_train(images, labels, config, batch, steps), args.repeats), "img/s"))
        attempt(f"fit b{batch}", lambda: record(
            f"{tag} model.fit b{batch} img/s", best(lambda: time_fit(images, labels, config, batch, steps), args.repeats), "img/s"))
        ratio(f"{tag} train()/fit b{batch}", f"{tag} train() b{batch} img/s",
              f"{tag} model.fit b{batch} img/s", "(goal >= 1.0)")
    model = UNetModel.new(config)
    for name, image, batch in (("stack", stack, 32), ("big", big, 1)):
        label = f"{image.shape[0]}x{image.shape[1]}²" if image.ndim == 3 else f"{image.shape[0]}²"
        attempt(f"predict {name}", lambda: record(
            f"{tag} predict() {label} Mpx/s", best(lambda: time_predict(model, image), args.repeats), "Mpx/s"))
        attempt(f"labels {name}", lambda: record(
            f"{tag} segment() {label} Mpx/s", best(lambda: time_predict(
                model, image, labels=True), args.repeats), "Mpx/s"))
        for kind in ("bfloat16", "uint8"):
            attempt(f"predict {kind} {name}", lambda: record(
                f"{tag} predict() as {kind} {label} Mpx/s", best(lambda: time_predict(
                    model, image, probabilities_as=kind), args.repeats), "Mpx/s"))
        attempt(f"keras predict {name}", lambda: record(
            f"{tag} model.predict {label} Mpx/s", best(lambda: time_keras_predict(model, image, batch), args.repeats), "Mpx/s"))
        attempt(f"ceiling {name}", lambda: record(
            f"{tag} forward ceiling {label} Mpx/s", best(lambda: time_ceiling(model, image, batch), args.repeats), "Mpx/s"))
        if name == "big" and args.variants:
            attempt("strips", lambda: record(
                f"{tag} predict() {label} 4 strips Mpx/s", best(lambda: time_predict(
                    model, image, tile_size=image.shape[-1] // 4 + 2 * halo(config)), args.repeats), "Mpx/s"))
            attempt("transfers", lambda: [record(f"{tag} {way} GB/s", v, "GB/s") for way, v in zip(
                ("host->device uint16", "device->host float32"), transfer_gbps(image))])
        if name == "stack" and args.variants:
            attempt("batch 8", lambda: record(
                f"{tag} predict() {label} batch 8 Mpx/s", best(lambda: time_predict(
                    model, image, batch_size=8), args.repeats), "Mpx/s"))
        if name == "big":
            attempt("peak memory", lambda: record(f"{tag} peak device bytes per px {label}",
                                                  peak_bytes_per_pixel(model, image), "B/px"))
        ratio(f"{tag} predict()/model.predict {label}", f"{tag} predict() {label} Mpx/s",
              f"{tag} model.predict {label} Mpx/s", "(goal >= 1.0)")
        ratio(f"{tag} predict()/ceiling {label}", f"{tag} predict() {label} Mpx/s",
              f"{tag} forward ceiling {label} Mpx/s")
        ratio(f"{tag} segment()/model.predict {label}", f"{tag} segment() {label} Mpx/s",
              f"{tag} model.predict {label} Mpx/s", "(goal >= 1.0; labels, not probabilities)")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a CPU smoke test")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--precisions", nargs="+", default=["float32", "auto"])
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--skip-train", action="store_true", help="prediction only")
    parser.add_argument("--variants", action="store_true",
                        help="also: 4096² in 4 strips, 512² planes in batches of 8, bare copies")
    args = parser.parse_args()
    big_side, planes, side = 4096, 64, 1024
    if args.quick:
        args.steps, args.repeats, args.batches = 3, 1, [2]
        big_side, planes, side = 256, 4, 256
    rng = np.random.default_rng(0)
    stack = np.clip(rng.normal(1000, 300, (planes, 512 if not args.quick else 128,
                                           512 if not args.quick else 128)), 0, None).astype(np.uint16)
    big = np.clip(rng.normal(1000, 300, (big_side, big_side)), 0, None).astype(np.uint16)
    images, labels = training_data(4, side)
    print(f"{time.strftime('%Y-%m-%d')}  keras {keras.__version__} ({keras.backend.backend()}), "
          f"{describe_device()}, {platform.machine()}, {os.cpu_count()} cores", flush=True)
    done = set()
    for precision in args.precisions:
        if resolve_precision(precision) in done:
            continue
        done.add(resolve_precision(precision))
        run_precision(precision, args, images, labels, stack, big)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": describe_device(), "backend": keras.backend.backend(),
                       "date": time.strftime("%Y-%m-%d"), **RESULTS}, f, indent=1)


if __name__ == "__main__":
    main()
