"""The hard benchmark of `bench_accuracy.py --hard`: one annotated image, the default U-Net
against StarDist trained from scratch for the same wall time.

Training: one 256 x 512 `make_hard_nuclei` image (seed 1), as when a user has annotated one
image. Test: three other images (seeds 1000-1002). napari-unet is `train(image, labels)`
with every default (automatic epochs, calibration included in its time); StarDist2D
(stardist, a benchmark-only dependency: ``pip install stardist``) gets 32 rays, grid 2,
128 x 128 patches, flips/rot90/intensity augmentation, the image's right quarter as its
validation set, and is stopped when its fit has run as long as the whole napari-unet
training did; its threshold optimisation comes after and is timed apart.
"""

from __future__ import annotations

import json
import time

import numpy as np


def _augment(x, y):
    """StarDist's example augmenter: random flips / rot90 and intensity scaling."""
    k = np.random.randint(4)
    x, y = np.rot90(x, k), np.rot90(y, k)
    if np.random.rand() < 0.5:
        x, y = x[:, ::-1], y[:, ::-1]
    x = x * np.random.uniform(0.6, 2) + np.random.uniform(-0.2, 0.2)
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


def train_stardist(image, labels, seconds: float, seed: int):
    """StarDist2D trained on ``image``/``labels`` until its fit has run ``seconds``.
    Returns ``(model, normalise, info)``."""
    import keras
    from csbdeep.utils import normalize
    from stardist import fill_label_holes
    from stardist.models import Config2D, StarDist2D

    class TimeStop(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.start, self.steps = time.perf_counter(), 0

        def on_train_batch_end(self, batch, logs=None):
            self.steps += 1
            if time.perf_counter() - self.start > seconds:
                self.model.stop_training = True

    def norm(x):
        return normalize(x.astype(np.float32), 1, 99.8, axis=(0, 1))

    x, y = norm(image), fill_label_holes(labels)
    cut = image.shape[1] * 3 // 4
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)
    config = Config2D(n_rays=32, grid=(2, 2), n_channel_in=1, train_patch_size=(128, 128),
                      train_batch_size=4, train_tensorboard=False)
    model = StarDist2D(config, name="stardist", basedir=f"/tmp/bench_stardist_{seed}")
    model.prepare_for_training()
    stopper = TimeStop()
    model.callbacks.append(stopper)
    t0 = time.perf_counter()
    model.train([x[:, :cut]], [y[:, :cut]], validation_data=([x[:, cut:]], [y[:, cut:]]),
                augmenter=_augment, epochs=10_000, steps_per_epoch=20)
    fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.optimize_thresholds([x[:, cut:]], [y[:, cut:]])
    info = {"fit_seconds": round(fit), "steps": stopper.steps,
            "threshold_seconds": round(time.perf_counter() - t0),
            "thresholds": {k: round(float(v), 3) for k, v in model.thresholds._asdict().items()}}
    return model, norm, info


def run_hard(args, pooled) -> None:
    """Train both on one hard image, print and optionally save their pooled scores."""
    from napari_unet import segment, train
    from napari_unet.samples.hard_nuclei import make_hard_nuclei

    image, labels = make_hard_nuclei(seed=1)
    tests = [make_hard_nuclei(seed=1000 + s) for s in range(3)]
    truths = [t for _, t in tests]
    results = {}
    t0 = time.perf_counter()
    unet = train(image, labels, seed=args.seed, verbose=False).model
    seconds = time.perf_counter() - t0
    results["napari-unet defaults"] = {
        **pooled([segment(unet, i) for i, _ in tests], truths), "train_seconds": round(seconds),
        "batches": unet.info.get("epochs_run", 0) * unet.info.get("steps_per_epoch", 0),
        "epochs_run": unet.info.get("epochs_run"),
        "calibration": unet.info.get("calibration")}
    print("napari-unet defaults", results["napari-unet defaults"], flush=True)
    model, norm, info = train_stardist(image, labels, seconds, args.seed)
    predicted = [model.predict_instances(norm(i))[0] for i, _ in tests]
    results["StarDist2D, same time"] = {**pooled(predicted, truths), **info}
    print("StarDist2D, same time", results["StarDist2D, same time"], flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)
