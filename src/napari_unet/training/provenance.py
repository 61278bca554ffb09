"""What a trained model remembers of its training: its history over all rounds, how,
when and with what it was trained, and what was annotated (`annotation_record`)."""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from typing import Any, Sequence

import numpy as np

from ..model.unet import UNetModel
from .data import labels_warning, largest_object
from .fit_loop import FitOutcome
from .settings import TrainSettings

__all__ = ["record_provenance", "annotation_record"]


def record_provenance(unet: UNetModel, outcome: FitOutcome, settings: TrainSettings,
                      schedule: tuple[int, int], seconds: float, labels: list,
                      names: Sequence[str] | None, class_weights: list[float] | None) -> None:
    """Give ``unet`` the history (extending an earlier round's) and the record of how,
    when and with what it was trained (``info``): versions, settings, ``schedule``
    (epochs, batches per epoch), the ``seconds`` it took, the annotation record of
    ``labels`` (this round's and, in ``rounds``, every round's), the class weights, how
    it ended; ``best_epoch`` counts over all rounds."""
    from ..backend.devices import resolve_precision
    from ..backend.runtime import load_keras
    from ..version import __version__

    keras = load_keras()
    named = settings.label_mode == "sparse" or unet.target == "classes"
    record = annotation_record(labels, settings.label_mode, names,
                               unet.class_names if named else None)
    before = len(next(iter(unet.history.values()), [])) if unet.history else 0
    rounds = list(unet.info.get("rounds", [])) + [{
        "first_epoch": before + 1, "epochs": len(outcome.history["loss"]),
        "batches": outcome.batches,
        "learning_rate": settings.learning_rate, "label_mode": settings.label_mode,
        "freeze_encoder": settings.freeze_encoder, "annotations": record}]
    options = {k: v for k, v in asdict(settings).items() if k not in ("seed", "steps_per_epoch")}
    options["border_weight"] = settings.border_weight_for(unet.target)  # None: the one used
    unet.update(history=_extend_history(unet.history, outcome.history, before), info={
        **unet.info,
        "napari_unet_version": __version__,
        "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
        "precision": resolve_precision(unet.config.precision),
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "train_seconds": round(seconds, 2),
        "epochs_run": before + len(outcome.history["loss"]),
        "best_epoch": before + outcome.best_epoch if outcome.best_epoch else 0,
        "annotations": record,
        "rounds": rounds,
        "monitor": "val_iou" if "val_iou" in outcome.history else "iou",
        "stopped_early": outcome.stopped,
        "time_limited": outcome.time_limited,
        "early_stopping": outcome.early_stopped,
        "diverged": outcome.diverged,
        "labels_warning": labels_warning(unet.target, settings.label_mode, labels),
        "largest_object_px": _widest(unet.info.get("largest_object_px"),
                                     largest_object(unet.target, settings.label_mode, labels)),
        **options,
        "epochs": schedule[0],
        "epochs_auto": settings.epochs is None,
        "steps_per_epoch": schedule[1],
        "class_weights": class_weights,
    })


def _widest(before: int | None, now: int | None) -> int | None:
    """The widest object over the rounds (None: none of them had dense labels)."""
    known = [w for w in (before, now) if w is not None]
    return max(known) if known else None


def _extend_history(old: dict, new: dict, before: int) -> dict[str, list[float]]:
    """``old`` epochs (``before`` of them) followed by ``new`` ones, key by key; a metric
    missing from one round (e.g. no validation) is NaN there."""
    after = len(new["loss"])
    keys = list(old) + [k for k in new if k not in old]
    return {k: list(old.get(k, [math.nan] * before)) + list(new.get(k, [math.nan] * after))
            for k in keys}


def annotation_record(labels: Sequence[np.ndarray], mode: str, names: Sequence[str] | None = None,
                      class_names: Sequence[str] | None = None) -> list[dict]:
    """Painted pixels per class, one entry per image: ``{"image", "pixels", "annotated",
    "per_class": {name: count}}``. ``mode`` is ``"sparse"`` (0 = unpainted, 1 =
    background, 2.. = classes) or ``"dense"`` (every pixel annotated, 0 = background,
    > 0 = objects; ``objects`` counts their ids). ``class_names``: one name per class
    (index 0 = background); for dense labels, given only when values are classes."""
    record = []
    for i, lab in enumerate(labels):
        lab = np.asarray(lab)
        values, counts = np.unique(lab, return_counts=True)
        entry: dict[str, Any] = {"image": names[i] if names else f"image {i + 1}",
                                 "pixels": int(lab.size)}
        instances = mode == "dense" and not class_names
        offset = 1 if mode == "sparse" else 0
        per_class: dict[str, int] = {}
        for value, count in zip(values.tolist(), counts.tolist()):
            index = value - offset
            if index < 0:
                continue
            if instances:
                name = "background" if index == 0 else "objects"
            elif class_names and index < len(class_names):
                name = class_names[index]
            else:
                name = "background" if index == 0 else f"class {index}"
            per_class[name] = per_class.get(name, 0) + int(count)
        entry["annotated"] = int(sum(per_class.values()))
        entry["per_class"] = per_class
        if mode == "dense":
            entry["objects"] = int(np.count_nonzero(values > 0))
        record.append(entry)
    return record
