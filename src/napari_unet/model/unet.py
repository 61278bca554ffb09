"""`UNetModel`: a Keras U-Net and its `ModelSummary`, everything needed to use it again."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .config import UNetConfig
from .network import build_unet
from .summary import ModelSummary

__all__ = ["UNetModel"]


def _summary_field(name: str, doc: str) -> property:
    return property(lambda self: getattr(self.summary, name), doc=doc)


def _decoding_value(name: str) -> property:
    return property(lambda self: getattr(self.summary.decoding, name),
                    doc=f"``decoding.{name}`` (read-only; the name v0.2 scripts use).")


@dataclass
class UNetModel:
    """A Keras U-Net (``keras_model``, made by `napari_unet.model.network.build_unet`)
    and its `ModelSummary` (``summary``: config, normalisation, target, decoding, class
    names, history, provenance).

    The summary's fields read as attributes (``model.config``, ``model.decoding``,
    ``model.history`` ...); a model that changes (training, calibration) gets a new
    summary through `update`.
    """

    keras_model: Any
    summary: ModelSummary = field(default_factory=ModelSummary)

    def __post_init__(self) -> None:
        if not isinstance(self.summary, ModelSummary):
            raise ValueError(f"summary must be a ModelSummary; got "
                             f"{type(self.summary).__name__}.")

    @classmethod
    def new(cls, config: UNetConfig | None = None, **summary: Any) -> UNetModel:
        """A fresh, untrained U-Net for ``config`` (default: the classic U-Net); ``summary``
        holds other `ModelSummary` fields (e.g. ``target="boundary"``)."""
        config = UNetConfig() if config is None else config
        return cls(build_unet(config), ModelSummary(config=config, **summary))

    def update(self, **changes: Any) -> None:
        """Replace fields of the summary (checked as a new `ModelSummary` is)."""
        self.summary = replace(self.summary, **changes)

    config = _summary_field("config", "The network's `UNetConfig`.")
    normalization = _summary_field("normalization", "How images are normalised.")
    target = _summary_field("target", '"foreground", "classes" or "boundary".')
    decoding = _summary_field("decoding", "How probabilities become labels (`Decoding`).")
    linked_decoding = _summary_field("linked_decoding",
                                     "The `Decoding` for objects linked in 3D, or None.")
    class_names = _summary_field("class_names", "One name per class, background first.")
    history = _summary_field("history", "Per-epoch metrics of all training rounds.")
    info = _summary_field("info", "Training settings and provenance.")
    threshold = _decoding_value("threshold")
    seed_threshold = _decoding_value("seed_threshold")
    min_size = _decoding_value("min_size")
    split_distance = _decoding_value("split_distance")
    split_ratio = _decoding_value("split_ratio")
