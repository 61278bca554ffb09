"""`Decoding`: the values that turn a model's probabilities into labels.

Calibration chooses them after training, a model keeps them (one set per plane and,
when calibrated on 3D labels, one for objects linked in 3D), its file stores them, and
`napari_unet.labels.options.LabelOptions` uses them wherever the user gave no value of
their own. They are checked once, here, whoever makes them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from ..common.checks import check_whole, is_real

__all__ = ["Decoding", "DECODING_FIELDS"]

MAX_PIXELS = 2**31 - 1  # a size or distance beyond this is no size in pixels


@dataclass(frozen=True)
class Decoding:
    """How probabilities become labels; every value is checked when it is made.

    ``threshold``: probability of foreground (for a boundary model 1 - p(background))
    above which a pixel is foreground, in (0, 1). ``seed_threshold``: interior
    probability above which a pixel seeds an object (boundary models), in (0, 1).
    ``min_size``: objects of fewer pixels (voxels, for objects linked in 3D) are
    removed. ``split_distance``: a boundary model's seeds, or a foreground model's
    touching objects, are split where their distance transform peaks lie at least this
    many pixels apart (0 = not split). ``split_ratio``: instead of a distance, seeds (or
    touching objects) are split where they narrow to a neck thinner than this share of
    the smaller part's width (`napari_unet.labels.seeds.split_at_necks`, size-free, no
    straight seams through large objects; 0 = not split, in [0, 1)).
    """

    threshold: float = 0.5
    seed_threshold: float = 0.5
    min_size: int = 0
    split_distance: int = 0
    split_ratio: float = 0.0

    def __post_init__(self) -> None:
        for name in ("threshold", "seed_threshold"):
            value = getattr(self, name)
            if not is_real(value) or not 0.0 < value < 1.0:
                raise ValueError(f"{name} must be a number between 0 and 1 (exclusive); got "
                                 f"{value!r}.")
            object.__setattr__(self, name, float(value))
        for name in ("min_size", "split_distance"):
            object.__setattr__(self, name, check_whole(name, getattr(self, name), 0, MAX_PIXELS,
                                                       unit=" of pixels"))
        if not is_real(self.split_ratio) or not 0.0 <= self.split_ratio < 1.0:
            raise ValueError(f"split_ratio must be a number in [0, 1) (0 = no neck split); got "
                             f"{self.split_ratio!r}.")
        object.__setattr__(self, "split_ratio", float(self.split_ratio))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, what: str = "decoding") -> Decoding:
        """The `Decoding` of a dict holding its values (as model files and calibration
        records store them; ``split_ratio``, added later, may be missing); ``ValueError``
        naming ``what`` otherwise."""
        required = set(DECODING_FIELDS) - set(OPTIONAL_FIELDS)
        if (not isinstance(data, dict) or not required <= set(data)
                or not set(data) <= set(DECODING_FIELDS)):
            keys = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"{what} must hold {', '.join(DECODING_FIELDS)}; got {keys}.")
        try:
            return cls(**data)
        except ValueError as err:
            raise ValueError(f"{what}: {err}") from None

    def describe(self, target: str, unit: str = "px") -> str:
        """``"threshold 0.5, seed 0.9, seeds split 4 px apart, min size 12 px"``: the values
        a ``target`` model uses (a seed only for boundary models), sizes in ``unit``."""
        seed = f", seed {self.seed_threshold:g}" if target == "boundary" else ""
        split = ""
        what = "seeds" if target == "boundary" else "touching objects"
        if self.split_ratio and target != "classes":
            split = f", {what} split at necks under {self.split_ratio:g} of their width"
        elif self.split_distance and target != "classes":
            split = f", {what} split {self.split_distance} px apart"
        return f"threshold {self.threshold:g}{seed}{split}, min size {self.min_size} {unit}"


DECODING_FIELDS = tuple(f.name for f in fields(Decoding))
OPTIONAL_FIELDS = ("split_ratio",)  # model files and records written before it lack it
