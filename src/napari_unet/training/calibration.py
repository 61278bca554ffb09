"""After training: choose how probabilities become labels, and check the model did not collapse.

`calibrate_trained` is the training job's last step: it predicts the annotated planes,
warns of a collapse, lets `napari_unet.training.decoding_search.calibrate` choose the
`Decoding` on the held-out blocks (cross-validated over them; on the training pixels,
with a warning, when too few objects were held out) and stores it (and, for stacks with
3D instance labels, the values for objects linked in 3D) on the model.
`collapse_warning` names a model that marks (almost) everything foreground or
background; `quality_warning` says when its labels are not usable yet.

No Keras here beyond running the network through `napari_unet.prediction.tiled`.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Any, Sequence

import numpy as np

from ..labels.decode import label_maps
from ..labels.options import relative_sampling
from .data import TrainingData, linked_stacks
from .decoding_search import MIN_OBJECTS, Calibration, calibrate

__all__ = ["Calibration", "calibrate", "calibrate_trained", "calibration_warning",
           "finish_calibration",
           "collapse_warning", "plane_probabilities", "quality_warning", "split_estimate"]

LINKED_VOXELS = 4_000_000  # at most this many voxels of 3D labels calibrate linked decoding
PLANE_PIXELS = 16_000_000  # at most this many pixels of annotated planes are predicted
SCRIBBLE_SPLIT = 0.7  # of the median object radius: a scribble model's split distance
MIN_SPLIT_OBJECTS = 5  # fewer predicted objects than this give no split estimate
USABLE_SCORE = {"ap@0.5": 0.3, "foreground_iou": 0.5}  # below: the labels are not usable yet
USEFUL_BATCHES = 200  # fewer batches than this: a likely reason for a useless model


def plane_probabilities(unet: Any, planes: Sequence[np.ndarray],
                        axes: str = "YXC") -> list[np.ndarray]:
    """Probabilities of already normalised float32 (H, W, C) planes (or, with ``axes``
    ``"ZYXC"``, volumes): (H, W) for a foreground model, (H, W, K) otherwise."""
    from ..common.progress import drain
    from ..prediction.tiled import iter_probabilities

    out = []
    for plane in planes:
        c = plane.shape[-1]
        identity = (np.zeros(c, np.float32), np.ones(c, np.float32))  # already normalised
        out.append(drain(iter_probabilities(unet, plane, axes=axes, stats=identity)))
    return out


def collapse_warning(foreground: Sequence[np.ndarray], truths: Sequence[np.ndarray],
                     annotated: Sequence[np.ndarray]) -> str:
    """A sentence when the predicted ``foreground`` masks cover (almost) all or none of the
    ``annotated`` pixels while the ``truths`` (boolean foreground) do not; else ``""``."""
    pred = sum(np.count_nonzero(f & a) for f, a in zip(foreground, annotated))
    true = sum(np.count_nonzero(t & a) for t, a in zip(truths, annotated))
    total = max(1, sum(np.count_nonzero(a) for a in annotated))
    pred_share, true_share = pred / total, true / total
    if pred_share > 0.98 and true_share < 0.9:
        what = "almost every pixel as foreground"
    elif pred_share < 0.02 and true_share > 0.05:
        what = "almost every pixel as background"
    else:
        return ""
    return (f"The trained model predicts {what} ({pred_share:.0%} foreground where the labels "
            f"have {true_share:.0%}): it has collapsed and its labels are useless. Train longer "
            "or with more annotations, lower the learning rate, or turn batch norm off for short "
            "runs.")


def calibrate_trained(unet: Any, settings: Any, data: TrainingData,
                      train_targets: Sequence[np.ndarray],
                      spacings: Sequence[Any] | None = None) -> None:
    """After training ``unet`` (a `UNetModel`) with ``settings`` on ``data`` (whose
    validation pixels are annotated in ``data.targets`` but not in ``train_targets``),
    choose how its probabilities become labels and say whether they are usable:

    - for dense labels (unless ``settings.calibrate`` is off) its `Decoding` that scores
      best on the held-out region (``info["calibration"]``); for a boundary model trained
      on 3D instance labels also its values for objects linked in 3D (``linked_decoding``,
      ``info["calibration_linked"]``);
    - for a foreground model trained on scribbles, the split distance of touching objects
      (`split_estimate`, ``info["split_estimate"]``);
    - seeds split at necks measured with each image's pixel sizes (``spacings``: one
      `napari_unet.labels.options.LabelOptions`-style spacing per image, e.g.
      ``{"Z": 2.0, "Y": 0.5, "X": 0.5}``, or None), as `LabelOptions.spacing` will measure
      them when the model labels images of that spacing; recorded as the
      calibration's ``spacing`` when not None;
    - ``info["collapse_warning"]`` when it marks (almost) everything one way, and
      ``info["quality_warning"]`` when its labels are not usable yet, with the reasons
      (too few batches, the time limit) and what to do; ``info["calibration_warning"]``
      when the values had to be chosen on the training pixels (`calibration_warning`);
      both given as a ``RuntimeWarning`` too.

    The model gets them through `UNetModel.update`."""
    held = [(y >= 0) & (t < 0) for y, t in zip(data.targets, train_targets)]
    planes = _calibration_planes(data.targets, held)
    probs = plane_probabilities(unet, [data.images[i] for i in planes])
    info = dict(unet.info)
    changes: dict[str, Any] = {}
    if settings.label_mode == "dense" and settings.calibrate:
        changes = _calibrate_dense(unet, data, held, planes, probs, info,
                                   dict(enumerate(spacings or ())))
    elif unet.target == "foreground" and settings.calibrate:  # scribbles: no truth to score
        info["split_estimate"] = split_estimate(probs, unet.decoding.threshold)
        changes["decoding"] = replace(unet.decoding,
                                      split_distance=info["split_estimate"]["split_distance"])
    info["collapse_warning"] = _collapse(unet, probs, data, planes, changes.get("decoding"))
    finish_calibration(unet, info, changes)


def finish_calibration(unet: Any, info: dict[str, Any], changes: dict[str, Any]) -> None:
    """Add the quality and calibration warnings to a trained ``unet``'s record ``info``
    (each also a ``RuntimeWarning``) and update it with ``info`` and ``changes``."""
    info["quality_warning"] = quality_warning(info)
    info["calibration_warning"] = calibration_warning(info)
    for key in ("quality_warning", "calibration_warning"):
        if info[key]:
            warnings.warn(info[key], RuntimeWarning, stacklevel=5)
    unet.update(info=info, **changes)


def _calibrate_dense(unet: Any, data: TrainingData, held: list, planes: list[int],
                     probs: list[np.ndarray], info: dict[str, Any],
                     spacings: dict[int, Any]) -> dict[str, Any]:
    """`calibrate` on the held-out pixels of dense labels (and, for 3D instance labels, on
    volumes) with each image's ``spacings`` (by image index; missing: none); records the scores in ``info`` and returns
    the model's changes."""
    changes: dict[str, Any] = {"linked_decoding": None}  # earlier values fit other weights
    info.pop("calibration_linked", None)
    kept = [data.truths[i] if unet.target == "boundary" else (data.truths[i] > 0)
            for i in planes]
    result = calibrate(unet, probs, kept, [held[i] for i in planes],
                       [data.targets[i] >= 0 for i in planes],
                       [relative_sampling(spacings.get(data.sources[i].image), "YX")
                        for i in planes])
    if result is not None:
        changes["decoding"], info["calibration"] = result.decoding, result.to_dict()
        _record_spacing(info["calibration"],
                        {spacings.get(data.sources[i].image) for i in planes})
    runs = (_within_limit(linked_stacks(data.sources, data.truths), data.targets, LINKED_VOXELS)
            if unet.target == "boundary" else [])
    if runs:
        linked = _calibrate_linked(unet, runs, data, held, dict(zip(planes, probs)), spacings)
        changes["linked_decoding"], info["calibration_linked"] = linked.decoding, linked.to_dict()
        _record_spacing(info["calibration_linked"],
                        {spacings.get(data.sources[run[0]].image) for run in runs})
    return changes


def _record_spacing(record: dict[str, Any], used: set) -> None:
    """The pixel sizes calibration measured with (``used``: checked spacings, see
    `napari_unet.labels.options.check_spacing`), in its ``record``: ``"spacing"``, a dict of
    axis sizes, or a list of them when images differ; nothing when none was given."""
    if used == {None}:
        return
    spacings = [None if s is None else dict(s) for s in sorted(used, key=str)]
    record["spacing"] = spacings[0] if len(spacings) == 1 else spacings


def quality_warning(info: dict[str, Any]) -> str:
    """A sentence when a model's training record ``info`` says its labels are not usable
    yet (it collapsed, or scored under `USABLE_SCORE` on the held-out data), with the
    reasons the record shows and what to do; ``""`` otherwise."""
    calibration = info.get("calibration") or {}
    low = calibration.get("score", 1.0) < USABLE_SCORE.get(calibration.get("metric"), 0.0)
    if not (info.get("collapse_warning") or low):
        return ""
    what = info.get("collapse_warning", "").split(". ")[0] or (
        f"The trained model's labels are not usable yet: {calibration['metric']} "
        f"{calibration['score']:.2f} on the {calibration['measured_on']} pixels.")
    reasons = []
    batches = trained_batches(info)
    if batches < USEFUL_BATCHES:
        reasons.append(f"it trained only {batches} batches (a useful run takes a few hundred)")
    if info.get("time_limited"):
        reasons.append(f"the time limit ended it after {info.get('train_seconds', 0):.0f} s")
    why = f" Likely because {' and '.join(reasons)}." if reasons else ""
    return (f"{what.rstrip('.')}.{why} Train longer (a larger time limit, or more epochs), "
            "annotate more objects, or lower the learning rate; then check the result with "
            "Run and Evaluate.")


def trained_batches(info: dict[str, Any]) -> int:
    """Batches a model's record ``info`` says it trained, over all rounds (a round recorded
    before rounds kept their batches counts its epochs at the last round's batches per
    epoch)."""
    steps = int(info.get("steps_per_epoch", 0))
    return sum(int(r.get("batches", int(r.get("epochs", 0)) * steps))
               for r in info.get("rounds", []))


def calibration_warning(info: dict[str, Any]) -> str:
    """A sentence when a model's training record ``info`` shows its label settings were
    chosen on the pixels it trained on (too few objects held out), so its calibration
    scores are optimistic; ``""`` otherwise."""
    records = [info.get(k) or {} for k in ("calibration", "calibration_linked")]
    fitted = [r for r in records if r.get("measured_on") == "annotated"]
    if not fitted:
        return ""
    return (f"The label settings were chosen on the training pixels: the held-out blocks "
            f"held fewer than {MIN_OBJECTS} objects, so the calibration score "
            f"({fitted[0]['score']:.2f}) is optimistic and the settings may not fit new "
            "images. Annotate more objects (or a second image), or raise the validation "
            "fraction, then train again; check the labels with Evaluate.")


def split_estimate(probs: Sequence[np.ndarray], threshold: float) -> dict[str, Any]:
    """The split distance of a foreground model that had no instance labels to be
    calibrated on (scribbles): `SCRIBBLE_SPLIT` times the median radius of the objects it
    predicts on the annotated planes ``probs`` (the largest distance-transform value of
    each connected object: about a nucleus' radius whether it stands alone or touches
    others), so touching objects are split where their centres lie apart; 0 (no split)
    with fewer than `MIN_SPLIT_OBJECTS` objects. Returns ``{"median_radius",
    "split_distance", "objects"}``."""
    from scipy import ndimage as ndi

    radii = []
    for p in probs:
        mask = p > threshold
        components, n = ndi.label(mask)
        if n:
            radii.extend(ndi.maximum(ndi.distance_transform_edt(mask), components,
                                     np.arange(1, n + 1)).tolist())
    radius = float(np.median(radii)) if radii else 0.0
    distance = int(round(SCRIBBLE_SPLIT * radius)) if len(radii) >= MIN_SPLIT_OBJECTS else 0
    return {"median_radius": round(radius, 2), "split_distance": distance,
            "objects": len(radii)}


def _collapse(unet: Any, probs: list[np.ndarray], data: TrainingData, planes: list[int],
              decoding: Any = None) -> str:
    """`collapse_warning` of the predicted ``planes``, their foreground taken as labels take
    it (`napari_unet.labels.decode.label_maps`) with ``decoding`` (None: the model's; give
    the calibrated one)."""
    decoding = decoding or unet.decoding
    foreground = [label_maps(p, unet.target, decoding, instances=False) > 0 for p in probs]
    return collapse_warning(foreground, [data.targets[i] > 0 for i in planes],
                            [data.targets[i] >= 0 for i in planes])


def _calibrate_linked(unet: Any, runs: list[list[int]], data: TrainingData, held: list,
                      predicted: dict[int, np.ndarray],
                      spacings: dict[int, Any]) -> Calibration:
    """Calibrate decoding with objects linked in 3D on the ``runs`` of Z planes that hold 3D
    instance labels (`napari_unet.training.data.linked_stacks`): each run's probabilities
    (reusing the ``predicted`` planes), truths and ``held``-out pixels become volumes,
    decoded with the ZYX pixel sizes of their image (``spacings``, one per image)."""
    missing = [i for run in runs for i in run if i not in predicted]
    predicted = {**predicted, **dict(zip(missing, plane_probabilities(
        unet, [data.images[i] for i in missing])))}
    volumes = [np.stack([predicted[i] for i in run]) for run in runs]
    return calibrate(unet, volumes, [np.stack([data.truths[i] for i in run]) for run in runs],
                     [np.stack([held[i] for i in run]) for run in runs],
                     [np.stack([data.targets[i] >= 0 for i in run]) for run in runs],
                     [relative_sampling(spacings.get(data.sources[run[0]].image), "ZYX")
                      for run in runs])


def _within_limit(runs: list[list[int]], ys: list, limit: int = PLANE_PIXELS) -> list[list[int]]:
    """The leading ``runs`` of planes that fit in ``limit`` pixels in all; the last one kept
    may be cut to fit (never below 3 planes, so the first run is always kept)."""
    kept, total = [], 0
    for run in runs:
        fit = run[:max(3, (limit - total) // ys[run[0]].size)]
        size = sum(ys[i].size for i in fit)
        if kept and total + size > limit:
            break
        kept.append(fit)
        total += size
    return kept


def _calibration_planes(ys: list, held: list, limit: int = PLANE_PIXELS) -> list[int]:
    """Indices of the planes calibration predicts: those with ``held``-out pixels first,
    then the others, up to ``limit`` pixels in all (at least one plane)."""
    first = [i for i, h in enumerate(held) if h.any()]
    order = first + sorted(set(range(len(ys))) - set(first))
    chosen, total = [], 0
    for i in order:
        if chosen and total + ys[i].size > limit:
            break
        chosen.append(i)
        total += ys[i].size
    return chosen
