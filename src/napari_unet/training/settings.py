"""`TrainSettings`: how to train, every value checked when it is made, and the automatic
training length (`TrainSettings.schedule`). No Keras here: front ends make settings
and send them to wherever training runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..common.checks import check_switch, check_whole, is_real, is_whole
from ..model.config import UNetConfig
from .data import LABEL_MODES, TARGETS

__all__ = ["TrainSettings", "LOSSES"]

LOSSES = ("bce", "bce_dice")
MIN_AUTO_BATCHES, MAX_AUTO_BATCHES = 600, 2000  # batches in all when epochs are automatic
MIN_AUTO_BATCHES_SPARSE = 200  # scribbles: fewer labelled pixels to learn from
MAX_AUTO_EPOCHS = 1000  # automatic epochs with a time budget
AUTO_BORDER_WEIGHT = 10.0  # the U-Net paper's w0, for boundary networks on dense labels


@dataclass(frozen=True)
class TrainSettings:
    """How to train (the keyword arguments of `iter_train`), checked when created.

    ``patch_size`` (side in pixels of the random patches, a multiple of
    2**depth), ``batch_size``, ``epochs`` (None: sized from the annotated pixels
    and ``time_budget``, see `schedule`), ``learning_rate`` (Adam),
    ``steps_per_epoch`` (default: the annotated pixels about twice, at least
    10), ``validation_fraction`` (share of annotated blocks held out), ``loss``
    (``"bce"`` or ``"bce_dice"``), ``label_mode``, ``augment`` (True: flips,
    rotations, elastic deformation, intensity, gamma, noise; False: none; or a
    dict / `napari_unet.training.augmentation.Augmentation` switching each, e.g.
    ``{"blur": True}``), ``seed`` (reproducible sampling, augmentation and
    dropout), ``data_parallel`` (None: split each batch across all local GPUs
    when there are several; True: across all local devices, at least two;
    False: one device; see `napari_unet.backend.parallel.DataParallel`),
    ``target`` (``"auto"``: ``"boundary"`` for instance labels, see
    `napari_unet.training.data.choose_target`), ``boundary_width`` (px, 1-3),
    ``border_weight`` and ``border_sigma`` (the U-Net paper's extra loss weight
    ``w0 * exp(-(d1 + d2)**2 / (2 sigma**2))`` where objects come close, see
    `napari_unet.labels.targets.border_weights`; ``border_weight`` is w0, 0 = off, the
    paper's 10; None (default): `AUTO_BORDER_WEIGHT` for a boundary network trained on
    dense instance labels, else 0, see `border_weight_for`; ``border_sigma`` in px, the
    paper's 5; dense instance labels only),
    ``patience`` (epochs without a better validation IoU before training ends, at
    least 200 batches' worth and not before 300 batches in all;
    the learning rate halves after half as many; None: never), ``time_budget``
    (seconds, then training ends as if stopped), ``calibrate`` (choose the
    label thresholds on the validation blocks, `napari_unet.training.calibration`) and
    ``freeze_encoder`` (fine-tuning: the encoder and bottleneck keep their weights,
    only the decoder learns).
    """

    patch_size: int = 128
    batch_size: int = 8
    epochs: int | None = None
    steps_per_epoch: int | None = None
    learning_rate: float = 1e-3
    validation_fraction: float = 0.15
    loss: str = "bce"
    label_mode: str = "dense"
    augment: Any = True
    seed: int | None = None
    data_parallel: bool | None = None
    target: str = "auto"
    boundary_width: int = 2
    border_weight: float | None = None
    border_sigma: float = 5.0
    patience: int | None = 8
    time_budget: float | None = None
    calibrate: bool = True
    freeze_encoder: bool = False

    def __post_init__(self) -> None:
        for name in ("patch_size", "batch_size"):
            check_whole(name, getattr(self, name), 1)
        if self.epochs is not None and (not is_whole(self.epochs) or self.epochs < 1):
            raise ValueError(f"epochs must be a whole number >= 1, or None to size training "
                             f"from the annotated pixels; got {self.epochs!r}.")
        if self.steps_per_epoch is not None and (not is_whole(self.steps_per_epoch)
                                                 or self.steps_per_epoch < 1):
            raise ValueError(f"steps_per_epoch must be a whole number >= 1, or None for about "
                             f"two passes over the annotations; got {self.steps_per_epoch!r}.")
        if not is_real(self.learning_rate) or self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be a finite number > 0 (e.g. 1e-3); got "
                             f"{self.learning_rate!r}.")
        if not is_real(self.validation_fraction) or not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in [0, 1); got {self.validation_fraction!r}.")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}; got {self.loss!r}.")
        if self.label_mode not in LABEL_MODES:
            raise ValueError(f"label_mode must be one of {LABEL_MODES}; got {self.label_mode!r}.")
        from .augmentation import Augmentation

        object.__setattr__(self, "augment", Augmentation.from_setting(self.augment))
        if self.seed is not None and not is_whole(self.seed):
            raise ValueError(f"seed must be a whole number or None; got {self.seed!r}.")
        if self.data_parallel is not None:
            check_switch("data_parallel", self.data_parallel)
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}; got {self.target!r}.")
        check_whole("boundary_width", self.boundary_width, 1, 3)
        if self.border_weight is not None and (not is_real(self.border_weight)
                                               or not 0 <= self.border_weight <= 100):
            raise ValueError(f"border_weight must be a number from 0 (off) to 100 (the U-Net "
                             f"paper uses 10); got {self.border_weight!r}.")
        if not is_real(self.border_sigma) or not 0 < self.border_sigma <= 100:
            raise ValueError(f"border_sigma must be a number of pixels in (0, 100] (the U-Net "
                             f"paper uses 5); got {self.border_sigma!r}.")
        if self.patience is not None:
            check_whole("patience", self.patience, 1, unit=" of epochs")
        if self.time_budget is not None and (not is_real(self.time_budget)
                                             or self.time_budget <= 0):
            raise ValueError(f"time_budget must be a number of seconds > 0, or None; got "
                             f"{self.time_budget!r}.")
        check_switch("calibrate", self.calibrate)
        check_switch("freeze_encoder", self.freeze_encoder)

    def check_for(self, config: UNetConfig, target: str) -> None:
        """Raise ``ValueError`` unless the patches fit the network's pooling grid and border
        weights, if on, have instance labels to come from (``target``: the network's)."""
        m = config.size_multiple
        if self.patch_size % m:
            raise ValueError(f"patch_size must be a positive multiple of 2**depth = {m}; got "
                             f"{self.patch_size!r}.")
        self.check_memory(config)
        if self.border_weight and (self.label_mode != "dense" or target == "classes"):
            raise ValueError("border_weight needs dense instance labels (one id per object) for "
                             f"a boundary or foreground network; got label_mode "
                             f"{self.label_mode!r} and target {target!r}. Set it to 0 "
                             "(--border-weight on the command line).")

    def border_weight_for(self, target: str) -> float:
        """The border weight w0 to train a ``target`` network with: as set, or for None
        `AUTO_BORDER_WEIGHT` when it learns dense instance labels as a boundary network
        (on one annotated image of touching nuclei it lifted AP@0.5 by 0.03 and AP@0.75
        by 0.1; docs/benchmarks.md, hard benchmark), else 0."""
        if self.border_weight is not None:
            return float(self.border_weight)
        return AUTO_BORDER_WEIGHT if self.label_mode == "dense" and target == "boundary" else 0.0

    def check_memory(self, config: UNetConfig, patch: tuple[int, ...] | None = None) -> None:
        """``ValueError`` when patches of ``patch_size`` (or of the shape ``patch``) in
        batches of ``batch_size`` need more memory to train ``config`` than the device
        (GPU, else this machine) has free: refused before the network trains. A 3D
        network is checked only with its ``patch`` shape, which the stacks' depth sets."""
        from ..backend.devices import accelerator_memory
        from ..model.costs import available_memory, training_memory_bytes

        if patch is None and config.ndim == 3:  # checked once the stacks give the patch depth
            return
        need = training_memory_bytes(config, patch or self.patch_size, self.batch_size)
        free = accelerator_memory() or available_memory()
        if need > free:
            raise ValueError(
                f"patches of {'x'.join(map(str, patch)) if patch else self.patch_size} px with "
                f"batch_size {self.batch_size} need about "
                f"{need / 2**30:,.1f} GiB to train this network, but only {free / 2**30:,.1f} "
                "GiB are free; use smaller patches or batches (the defaults are 128 and 8).")

    def schedule(self, targets: Sequence[np.ndarray],
                 patch: tuple[int, ...] | None = None) -> tuple[int, int]:
        """``(epochs, batches per epoch)`` for the training ``targets`` (-1 = not annotated)
        cut into ``patch``-shaped patches (None: ``patch_size`` squared; a 3D network's
        ``(D, P, P)``).

        Batches per epoch: as set, or about two passes over the annotated pixels (at
        least 10). Epochs: as set; with a ``time_budget``, `MAX_AUTO_EPOCHS` (the budget
        or early stopping ends training); else about 20 passes over the annotated
        pixels, but at least `MIN_AUTO_BATCHES` (`MIN_AUTO_BATCHES_SPARSE` for scribbles)
        and at most `MAX_AUTO_BATCHES` batches in all, in 5 to 100 epochs (5 epochs of more
        than 400 batches exceed the cap): one annotated 256 x 512 image gets the ~600
        batches it needs to reach its accuracy plateau (docs/benchmarks.md, hard
        benchmark), a few scribbles a few hundred, and a large dataset is not trained for
        hours by default (early stopping ends a run that stopped improving).
        """
        annotated = sum(int(np.count_nonzero(t >= 0)) for t in targets)
        voxels = math.prod(patch) if patch is not None else self.patch_size**2
        passes = annotated / (voxels * self.batch_size)  # batches per pass
        steps = (int(self.steps_per_epoch) if self.steps_per_epoch is not None
                 else max(10, math.ceil(2 * passes)))
        if self.epochs is not None:
            return int(self.epochs), steps
        if self.time_budget is not None:
            return MAX_AUTO_EPOCHS, steps
        least = MIN_AUTO_BATCHES_SPARSE if self.label_mode == "sparse" else MIN_AUTO_BATCHES
        epochs = math.ceil(max(20 * passes, least) / steps)
        if epochs * steps > MAX_AUTO_BATCHES:
            epochs = MAX_AUTO_BATCHES // steps
        return int(np.clip(epochs, 5, 100)), steps
