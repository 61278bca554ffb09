"""The built-in demo: train the default U-Net on synthetic nuclei and segment a held-out image.

Used by ``napari-unet demo``; everything it does goes through the public API.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..model.config import UNetConfig
from ..samples.nuclei import make_nuclei


@dataclass
class DemoSettings:
    """What the demo trains on and for how long (defaults: about two minutes on 2 CPU cores)."""

    n_train: int = 8
    image_size: int = 256
    test_size: int = 384
    epochs: int = 12
    steps_per_epoch: int = 30
    patch_size: int = 128
    batch_size: int = 8
    start_neurons: int = 16
    depth: int = 4
    seed: int = 0


def quick_demo_settings(seed: int = 0) -> DemoSettings:
    """``demo --quick``: a smaller network (depth 3) on six 128 px images, about a minute on
    2 CPU cores."""
    return DemoSettings(n_train=6, image_size=128, test_size=256, epochs=15, steps_per_epoch=20,
                        patch_size=64, batch_size=8, start_neurons=16, depth=3, seed=seed)


def demo_data(settings: DemoSettings):
    """Training pairs (seeds 1..n) and a held-out test pair (seed 1000 + seed)."""
    size = (settings.image_size, settings.image_size)
    pairs = [make_nuclei(size, seed=settings.seed * 100 + s + 1) for s in range(settings.n_train)]
    test = make_nuclei((settings.test_size, settings.test_size), seed=1000 + settings.seed)
    return pairs, test


def run_demo(out_dir: str | Path, settings: DemoSettings | None = None,
             on_progress: Callable[[object], None] | None = None) -> dict:
    """Train, predict the held-out image, and write the results to ``out_dir``.

    Writes ``model.keras``, ``labels.tif``, ``overlay.png`` and ``metrics.json``
    (and the held-out ``image.tif`` with its ``truth.tif``, for viewing);
    returns the metrics dict (`napari_unet.labels.metrics.evaluate`'s keys: foreground IoU,
    Dice, precision/recall/F1/AP at IoU 0.5 to 0.9; object F1 as before; timings ...).
    """
    from ..io.images import overlay, write_image
    from ..labels.metrics import evaluate, matched_objects
    from ..model.files import save_model
    from ..prediction.api import segment
    from ..training.job import train

    settings = settings or DemoSettings()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pairs, (test_image, test_truth) = demo_data(settings)
    config = UNetConfig(start_neurons=settings.start_neurons, depth=settings.depth)
    t0 = time.perf_counter()
    result = train(
        [p[0] for p in pairs], [p[1] for p in pairs], config,
        patch_size=settings.patch_size, batch_size=settings.batch_size, epochs=settings.epochs,
        steps_per_epoch=settings.steps_per_epoch, seed=settings.seed, callback=on_progress,
        verbose=on_progress is None,
    )
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    labels = segment(result.model, test_image)  # the thresholds calibrated in training
    predict_s = time.perf_counter() - t1
    metrics = {
        **evaluate(labels, test_truth),
        **{f"object_{k}": v for k, v in matched_objects(labels, test_truth).items()},
        "train_seconds": round(train_s, 1),
        "predict_seconds": round(predict_s, 2),
        "best_epoch": result.model.info["best_epoch"],
        "final_val_loss": result.history.get("val_loss", [None])[-1],
        "target": result.model.target,
        "calibration": result.model.info.get("calibration"),
        "config": config.to_dict(),
        "settings": settings.__dict__,
    }
    save_model(result.model, out / "model.keras")
    write_image(out / "labels.tif", labels)
    write_image(out / "image.tif", test_image)
    write_image(out / "truth.tif", test_truth)
    write_image(out / "overlay.png", overlay(test_image, labels, test_truth))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    return metrics

