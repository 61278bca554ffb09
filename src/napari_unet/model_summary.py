"""`ModelSummary`: what the viewer knows of a model that lives in the engine process.

It holds everything but the weights, is picklable across the process boundary, and
importing it does not import TensorFlow or Keras.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import UNetConfig
from .normalization import PercentileNormalization

__all__ = ["ModelSummary"]


@dataclass(frozen=True)
class ModelSummary:
    """A model's settings and training record, without its network.

    Attributes
    ----------
    config : the network's `UNetConfig`.
    normalization : how images are normalised before they reach the network.
    target : ``"foreground"``, ``"classes"`` or ``"boundary"`` (see `UNetModel`).
    threshold, seed_threshold : the model's (calibrated) probability thresholds, 0-1.
    min_size : objects of fewer pixels are dropped by default.
    split_distance : a boundary model's seeds are split at distance peaks this many
        pixels apart (0 = not split).
    linked_decoding : the values for objects linked in 3D, when calibrated on 3D labels.
    class_names : one name per output class, index 0 = background.
    history : per-epoch metrics over all training rounds (``loss``, ``val_iou`` ...).
    info : training settings and provenance (best epoch, calibration, rounds ...).
    """

    config: UNetConfig
    normalization: PercentileNormalization = field(default_factory=PercentileNormalization)
    target: str = "foreground"
    threshold: float = 0.5
    seed_threshold: float = 0.5
    min_size: int = 0
    split_distance: int = 0
    linked_decoding: dict[str, Any] = field(default_factory=dict)
    class_names: tuple[str, ...] = ()
    history: dict[str, list[float]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, model: Any) -> ModelSummary:
        """The summary of a `UNetModel` ``model``."""
        return cls(config=model.config, normalization=model.normalization, target=model.target,
                   threshold=float(model.threshold), seed_threshold=float(model.seed_threshold),
                   min_size=int(model.min_size), split_distance=int(model.split_distance),
                   linked_decoding=dict(model.linked_decoding),
                   class_names=tuple(model.class_names),
                   history={k: list(v) for k, v in model.history.items()},
                   info=dict(model.info))

    @property
    def epochs(self) -> int:
        """Epochs trained so far, over all rounds (0 for a new network)."""
        return len(self.history.get("loss", []))

    @property
    def trained(self) -> bool:
        return self.epochs > 0

    def decoding(self, linked: bool = False) -> str:
        """"threshold 0.5, seed 0.9, min size 12 px": how probabilities become labels; with
        ``linked`` (objects linked in 3D) the model's values for that, when it has them."""
        if linked and self.linked_decoding:
            return (_describe(self.linked_decoding, self.target, "voxels")
                    + " (for objects linked in 3D)")
        return _describe({"threshold": self.threshold, "seed_threshold": self.seed_threshold,
                          "min_size": self.min_size, "split_distance": self.split_distance},
                         self.target, "px")


def _describe(values: dict[str, Any], target: str, unit: str) -> str:
    seed = f", seed {values['seed_threshold']:g}" if target == "boundary" else ""
    split = (f", seeds split {values['split_distance']} px apart"
             if values["split_distance"] else "")
    return f"threshold {values['threshold']:g}{seed}{split}, min size {values['min_size']} {unit}"
