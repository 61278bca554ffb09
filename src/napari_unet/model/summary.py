"""`ModelSummary`: what a model is, without its network.

One Keras-free record of a model: its architecture (`UNetConfig`), normalisation, what
it learnt (its target), how its probabilities become labels (`Decoding`, per plane and
for objects linked in 3D), its class names, training history and provenance. A
`napari_unet.model.unet.UNetModel` is a Keras network with a summary; the napari widgets
hold only the summary of the model that lives in the engine process (it pickles across
the process boundary), and `napari-unet info` reads one from a model file without
loading TensorFlow. The summary also writes the one report text both show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import UNetConfig
from .decoding import DECODING_FIELDS, Decoding
from .normalization import PercentileNormalization

__all__ = ["ModelSummary", "TARGETS", "FORMAT_VERSION"]

TARGETS = ("foreground", "classes", "boundary")
BOUNDARY_CLASS_NAMES = ("background", "interior", "boundary")
FORMAT_VERSION = 1  # of the metadata a model file stores (`ModelSummary.metadata`)


@dataclass(frozen=True)
class ModelSummary:
    """A model's settings and training record, checked when made (``ValueError``).

    Attributes
    ----------
    config : the network's `UNetConfig`.
    normalization : how images are normalised before they reach the network.
    target : what the network learnt: ``"foreground"`` (one sigmoid output),
        ``"classes"`` (softmax over classes) or ``"boundary"`` (softmax over
        background / interior / boundary, decoded into instances by a seeded
        watershed); ``""`` is filled in from ``config.n_classes``.
    decoding : how its probabilities become labels (`Decoding`, calibrated in training).
    linked_decoding : a boundary model's `Decoding` for objects linked in 3D (sizes in
        voxels), calibrated on 3D instance labels; None when it had none.
    class_names : one name per output class, index 0 = background.
    history : per-epoch metrics over all training rounds (``loss``, ``val_iou`` ...).
    info : training settings and provenance (best epoch, calibration, rounds ...).

    It is frozen: a changed model gets a new summary (``dataclasses.replace``); the
    ``history`` and ``info`` dicts are never changed in place.
    """

    config: UNetConfig = field(default_factory=UNetConfig)
    normalization: PercentileNormalization = field(default_factory=PercentileNormalization)
    target: str = ""
    decoding: Decoding = field(default_factory=Decoding)
    linked_decoding: Decoding | None = None
    class_names: tuple[str, ...] = ()
    history: dict[str, list[float]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, kind in (("config", UNetConfig), ("normalization", PercentileNormalization),
                           ("decoding", Decoding), ("history", dict), ("info", dict)):
            if not isinstance(getattr(self, name), kind):
                raise ValueError(f"{name} must be a {kind.__name__}; got "
                                 f"{type(getattr(self, name)).__name__}.")
        if self.linked_decoding is not None and not isinstance(self.linked_decoding, Decoding):
            raise ValueError(f"linked_decoding must be a Decoding or None; got "
                             f"{type(self.linked_decoding).__name__}.")
        n = self.config.n_classes
        target = self.target or ("foreground" if n == 1 else "classes")
        fits = {"foreground": n == 1, "classes": n > 1, "boundary": n == 3}
        if not fits.get(target, False):
            raise ValueError(f"target {target!r} does not fit a network with n_classes={n}; use "
                             "'foreground' (1 output), 'classes' (2 or more) or 'boundary' (3).")
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "class_names", self._checked_names())

    def _checked_names(self) -> tuple[str, ...]:
        """The class names, or the defaults for the target; ``ValueError`` if their number
        does not fit the network."""
        names = tuple(str(n) for n in self.class_names)
        wanted = max(2, self.config.n_classes)
        if not names:
            if self.target == "boundary":
                return BOUNDARY_CLASS_NAMES
            return ("background",) + (("foreground",) if wanted == 2 else
                                      tuple(f"class {i}" for i in range(1, wanted)))
        if len(names) != wanted:
            raise ValueError(f"class_names must give {wanted} names (background first) for "
                             f"this network; got {list(names)}.")
        return names

    @property
    def epochs(self) -> int:
        """Epochs trained so far, over all rounds (0 for a new network)."""
        return len(self.history.get("loss", []))

    @property
    def trained(self) -> bool:
        return self.epochs > 0

    def decoding_for(self, linked: bool = False) -> Decoding:
        """The `Decoding` to use: for objects linked in 3D (``linked``) the model's
        3D-calibrated values when it has them, else its per-plane ones."""
        return self.linked_decoding if linked and self.linked_decoding else self.decoding

    def describe_decoding(self, linked: bool = False) -> str:
        """"threshold 0.5, seed 0.9, min size 12 px": how probabilities become labels; with
        ``linked`` (objects linked in 3D) the model's values for that, when it has them (a
        3D network's own values count voxels)."""
        if linked and self.linked_decoding:
            return (self.linked_decoding.describe(self.target, "voxels")
                    + " (for objects linked in 3D)")
        return self.decoding.describe(self.target, "voxels" if self.config.ndim == 3 else "px")

    def metadata(self) -> dict[str, Any]:
        """The JSON-serialisable record stored next to the weights in a model file (read
        back by `napari_unet.model.file_format`)."""
        return {
            "format": "napari-unet",
            "format_version": FORMAT_VERSION,
            "config": self.config.to_dict(),
            "normalization": self.normalization.to_dict(),
            "target": self.target,
            **self.decoding.to_dict(),
            "linked_decoding": self.linked_decoding.to_dict() if self.linked_decoding else {},
            "class_names": list(self.class_names),
            "history": {k: [float(v) for v in vals] for k, vals in self.history.items()},
            "info": self.info,
        }

    def report(self) -> str:
        """One paragraph on how the model was trained: how training ended, the best epoch
        and its IoU, what the network learnt, the calibrated label settings and any
        collapse warning, which comes first (``"untrained"`` for a new network)."""
        info, history = self.info, self.history
        if "monitor" not in info:
            return f"untrained {self.target} network"
        how = "trained"
        if info.get("stopped_early"):
            how = "stopped at the time limit" if info.get("time_limited") else "stopped"
        if info.get("early_stopping"):
            how = "trained (no better epoch lately, so it ended early)"
        if info.get("diverged"):
            how = f"stopped because {info['diverged']} (lower the learning rate); kept"
        monitor, best = info["monitor"], info["best_epoch"]
        where = " on scribbles only" if info.get("label_mode") == "sparse" else ""
        score = history[monitor][best - 1] if best else float("nan")
        text = (f"{how}: {info['epochs_run']} epochs, best epoch {best} "
                f"({_iou_name(monitor, self.target)}{where} {score:.3f}); learnt {self.target}")
        for key, unit, what in (("calibration", "voxels" if self.config.ndim == 3 else "px", ""),
                                ("calibration_linked", "voxels", "for objects linked in 3D, ")):
            if info.get(key):
                text += "; " + _calibration_text(info[key], self.target, unit, what)
        estimate = info.get("split_estimate") or {}
        if estimate.get("split_distance"):
            text += (f"; touching objects split {estimate['split_distance']} px apart (0.7 of "
                     f"the median radius, {estimate['median_radius']:g} px, of the "
                     f"{estimate['objects']} objects it finds on the annotated planes)")
        # the warning first: a status shows a paragraph's first lines without scrolling
        return f"WARNING: {self.warning} {text}" if self.warning else text

    @property
    def warning(self) -> str:
        """Why the model's labels are not usable yet, and what to do (``""``: no warning);
        then, if its last round learnt from 0/1 masks, that it will not split touching objects."""
        usable = (self.info.get("quality_warning") or self.info.get("collapse_warning")
                  or self.info.get("calibration_warning") or "")
        return " ".join(w for w in (usable, self.info.get("labels_warning", "")) if w)


def _iou_name(monitor: str, target: str) -> str:
    """What the monitored IoU measures: "val iou" of a foreground network; of a boundary
    or classes network the IoU of the argmax classes, which stays near 0 while labels,
    decoded from 1 - p(background), can already be good (their AP is said after it)."""
    name = monitor.replace("_", " ")
    if target == "boundary":
        return f"{name} of the interior and boundary classes by argmax"
    if target == "classes":
        return f"{name}, mean over the classes by argmax"
    return name


def _calibration_text(record: dict[str, Any], target: str, unit: str, what: str) -> str:
    """"calibrated on the validation pixels: threshold 0.5, ... (ap@0.5 0.9, defaults 0.8)"
    (``what`` goes first, e.g. "for objects linked in 3D, ")."""
    values = Decoding(**{k: record[k] for k in DECODING_FIELDS if k in record})
    where = "volumes" if unit == "voxels" else "pixels"
    measured = f"{record['measured_on']} {where}"
    how = {"training": f"chosen on the training {where}, scored on the validation {where}",
           "prior": "robust values kept (confident seeds split at necks; chosen values did "
                    f"not beat them beyond noise), scored on the {measured}",
           }.get(record.get("chosen_on"), f"calibrated on the {measured}")
    return (f"{what}{how}: {values.describe(target, unit)} "
            f"({record['metric']} {record['score']:.3f}{_cross_validated(record)}, "
            f"defaults {record['default_score']:.3f})")


def _cross_validated(record: dict[str, Any]) -> str:
    """", 0.912 cross-validated over 4 folds of blocks" when the record has a CV score (of
    the values chosen on the held-out blocks, whether or not they were kept)."""
    if record.get("cv_score") is None:
        return ""
    cv = f"{record['cv_score']:.3f} cross-validated over {record['folds']} folds of blocks"
    if record.get("chosen_on", "validation") == "validation":
        return f", {cv}"
    return f"; values chosen on the validation blocks: {cv}"
