"""Array handling shared by training and prediction: checks, axes, normalisation,
label encodings, validation split, patch sampling and augmentation.

Conventions: the model sees float32 batches shaped ``(N, H, W, C)``. Training
targets are float32 ``(N, H, W, 1)`` holding a class index per pixel (0 =
background) or ``IGNORE`` (-1) where the pixel is not annotated or is padding.
Nothing here modifies its inputs: every function returns new arrays.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

IGNORE = -1.0
MAX_LABEL = 2**31 - 1  # label ids and class numbers above this are not labels
SPATIAL_LAYOUTS = ("YX", "ZYX", "TYX", "TZYX")
LABEL_MODES = ("dense", "sparse")


# ----------------------------------------------------------------------------- checks
def check_array_type(arr: Any, what: str = "image") -> Any:
    """Check the dtype and size of an array-like with ``dtype`` and ``shape`` (numpy or
    dask, nothing is computed); returns it unchanged or raises ``ValueError``."""
    dtype = np.dtype(getattr(arr, "dtype", object))
    if dtype == object or not (np.issubdtype(dtype, np.number) or dtype == bool) \
            or np.issubdtype(dtype, np.complexfloating):
        raise ValueError(
            f"The {what} has dtype {dtype}; convert it to an integer or float "
            "array (for example uint8, uint16 or float32)."
        )
    if math.prod(arr.shape) == 0:
        raise ValueError(f"The {what} is empty (shape {tuple(arr.shape)}).")
    return arr


def check_channels(axes: str, shape: tuple[int, ...], expected: int, what: str = "image") -> None:
    """Raise ``ValueError`` unless an array of ``shape`` with ``axes`` has ``expected`` channels."""
    found = shape[axes.index("C")] if "C" in axes else 1
    if found != expected:
        raise ValueError(
            f"The {what} has {found} channel(s) (axes {axes}, shape {tuple(shape)}) but the "
            f"model expects {expected}; build a model with in_channels={found}, or choose "
            "another image or axes."
        )


def check_image(image: Any, what: str = "image") -> np.ndarray:
    """Return ``image`` as a numeric ndarray (no copy when possible) or raise ``ValueError``.

    Rejects non-numeric dtypes, empty arrays and NaN/inf values.
    """
    arr = check_array_type(np.asarray(image), what)
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        n_bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(
            f"The {what} contains {n_bad} NaN or infinite values; replace them "
            "(for example with numpy.nan_to_num) before training or prediction."
        )
    return arr


def check_labels(labels: Any, shape: tuple[int, ...], what: str = "labels") -> np.ndarray:
    """Return ``labels`` as an integer ndarray matching ``shape`` or raise ``ValueError``."""
    arr = np.asarray(labels)
    if arr.shape != tuple(shape):
        raise ValueError(
            f"The {what} have shape {arr.shape} but the image has spatial shape "
            f"{tuple(shape)}; paint the labels on a layer of the same size as the image."
        )
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or not np.array_equal(arr, np.round(arr)):
            raise ValueError(
                f"The {what} have non-integer values (dtype {arr.dtype}); labels must "
                "be whole numbers: 0 = background, 1, 2, ... = objects or classes."
            )
    elif not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"The {what} have dtype {arr.dtype}; use an integer dtype.")
    if arr.size == 0:
        raise ValueError(f"The {what} are empty (shape {arr.shape}).")
    if arr.min() < 0:
        raise ValueError(f"The {what} contain negative values; labels must be >= 0.")
    if arr.max() > MAX_LABEL:
        raise ValueError(
            f"The {what} contain the value {arr.max()!r}, more than {MAX_LABEL}; labels "
            "must be ids or class numbers (0 = background, 1, 2, ...), not intensities."
        )
    return arr.astype(np.int64) if np.issubdtype(arr.dtype, np.floating) else arr


# ----------------------------------------------------------------------------- axes
def default_axes(shape: tuple[int, ...], in_channels: int, rgb: bool | None = None) -> str:
    """Guess the axes string (e.g. ``"YX"``, ``"ZYXC"``) of an array of ``shape``.

    A last axis of size 3 or 4 equal to ``in_channels`` (or ``rgb=True``) is the
    channel axis; otherwise a 3D array is ZYX and a 4D array TZYX.
    """
    ndim = len(shape)
    has_channel = bool(rgb) if rgb is not None else (
        in_channels > 1 and ndim >= 3 and shape[-1] == in_channels
    )
    n_spatial = ndim - (1 if has_channel else 0)
    if n_spatial < 2 or n_spatial > 4:
        raise ValueError(
            f"Cannot interpret an array of shape {shape}: expected YX, ZYX, TYX or "
            "TZYX, optionally with a channel axis. Pass axes=... explicitly."
        )
    if rgb is None and not has_channel and ndim == 3 and shape[-1] in (3, 4) and min(shape[:2]) > 4:
        raise ValueError(
            f"The image of shape {shape} looks like an RGB(A) picture (last axis {shape[-1]}) "
            f"but the model takes {in_channels} channel(s). Pass axes='YXC' with a model "
            f"built for in_channels={shape[-1]}, convert the image to grey, or pass "
            "axes='ZYX' if it really is a stack of planes."
        )
    layout = {2: "YX", 3: "ZYX", 4: "TZYX"}[n_spatial]
    return layout + ("C" if has_channel else "")


def check_axes(axes: str, shape: tuple[int, ...]) -> str:
    """Validate an axes string such as ``"TZYX"`` or ``"CZYX"`` for an array of ``shape``."""
    if not isinstance(axes, str):
        raise ValueError(f"axes must be a string such as 'YX' or 'ZYXC'; got {axes!r}.")
    axes = axes.upper()
    if len(axes) != len(shape):
        raise ValueError(
            f"axes {axes!r} has {len(axes)} letters but the array has {len(shape)} "
            f"dimensions (shape {shape})."
        )
    if len(set(axes)) != len(axes) or set(axes) - set("TZYXC"):
        raise ValueError(f"axes {axes!r} must use each of T, Z, Y, X, C at most once.")
    if "Y" not in axes or "X" not in axes:
        raise ValueError(f"axes {axes!r} must contain Y and X.")
    if axes.replace("C", "") not in SPATIAL_LAYOUTS:
        raise ValueError(
            f"axes {axes!r}: the non-channel axes must be one of {SPATIAL_LAYOUTS} in that order."
        )
    return axes


def resolve_axes(axes: str | None, shape: tuple[int, ...], in_channels: int) -> str:
    """``axes`` validated for ``shape`` if given, else guessed with `default_axes`."""
    return check_axes(axes, shape) if axes else default_axes(shape, in_channels)


def to_planes(image: np.ndarray, axes: str) -> tuple[np.ndarray, tuple[int, ...]]:
    """Reshape an array with ``axes`` to planes ``(N, H, W, C)``.

    Returns the planes (a view when the layout allows) and the leading spatial
    shape (e.g. ``(T, Z)``) needed by `from_planes`.
    """
    if "C" in axes:
        image = np.moveaxis(image, axes.index("C"), -1)
    else:
        image = image[..., np.newaxis]
    lead = image.shape[:-3]
    planes = image.reshape((-1,) + image.shape[-3:])
    return planes, lead


def from_planes(planes: np.ndarray, lead: tuple[int, ...]) -> np.ndarray:
    """Inverse of `to_planes` for a per-plane result shaped ``(N, H, W, ...)``."""
    return planes.reshape(tuple(lead) + planes.shape[1:])


# ----------------------------------------------------------------------------- normalisation
@dataclass(frozen=True)
class PercentileNormalization:
    """Map the ``low`` and ``high`` percentiles of each channel to 0 and 1.

    Computed per image (over all its planes), per channel. Stored in the model
    file so prediction normalises exactly as training did.
    """

    low: float = 1.0
    high: float = 99.8

    def __post_init__(self) -> None:
        if not 0.0 <= self.low < self.high <= 100.0:
            raise ValueError(
                f"Normalisation percentiles must satisfy 0 <= low < high <= 100; "
                f"got low={self.low}, high={self.high}."
            )

    def statistics(self, planes: Any) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel (lo, hi) of planes ``(N, H, W, C)`` (numpy or dask).

        Inputs over 4 Mpx are sampled on a regular grid (every s-th row and
        column), the same way for in-memory and lazy arrays.
        """
        step = max(1, int(np.ceil(np.sqrt(np.prod(planes.shape[:3]) / 4_000_000))))
        sample = planes[:, ::step, ::step, :]
        sample = np.asarray(sample).reshape(-1, planes.shape[-1])
        work = _work_dtype(sample.dtype)
        lo, hi = np.percentile(sample.astype(work, copy=False), [self.low, self.high], axis=0)
        return lo.astype(work), hi.astype(work)

    def apply(
        self, planes: np.ndarray, stats: tuple[np.ndarray, np.ndarray] | None = None
    ) -> np.ndarray:
        """Return a new float32 array ``(planes - lo) / (hi - lo)``; constant images give 0."""
        lo, hi = stats if stats is not None else self.statistics(planes)
        work = _work_dtype(planes.dtype)
        scale = np.asarray(np.where(hi - lo > 1e-12, hi - lo, 1.0), work)
        lo = np.asarray(lo, work)
        out = planes.astype(work)  # always a copy: the caller's array stays untouched
        out -= lo
        out /= scale
        if work != np.float32:  # values beyond float32's range would become inf
            np.clip(out, -_NORMALISED_LIMIT, _NORMALISED_LIMIT, out=out)
            return out.astype(np.float32)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "percentile", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PercentileNormalization:
        data = dict(data)
        kind = data.pop("kind", "percentile")
        if kind != "percentile":
            raise ValueError(f"Unknown normalisation kind {kind!r}; only 'percentile' exists.")
        return cls(**data)


_NORMALISED_LIMIT = 1e30


def _work_dtype(dtype: np.dtype) -> type:
    """float64 for inputs whose values may not fit float32 (float64, 64-bit ints), else float32."""
    return np.float64 if np.dtype(dtype).itemsize == 8 else np.float32


# ----------------------------------------------------------------------------- labels
def encode_targets(labels: np.ndarray, n_classes: int, mode: str = "dense") -> np.ndarray:
    """Turn user labels into float32 training targets (class index or ``IGNORE``).

    ``mode="dense"``: 0 = background, > 0 = foreground (``n_classes == 1``) or
    the class index (``n_classes >= 2``). ``mode="sparse"`` (scribbles): 0 = not
    annotated (ignored), 1 = background, 2..n = classes (foreground for binary).
    Raises ``ValueError`` for labels that cannot train anything.
    """
    if mode not in LABEL_MODES:
        raise ValueError(f"label mode must be one of {LABEL_MODES}; got {mode!r}.")
    n_out = max(2, n_classes)
    if mode == "dense":
        if n_classes == 1:
            target = (labels > 0).astype(np.float32)
        else:
            if labels.max() >= n_classes:
                raise ValueError(
                    f"Labels contain class {int(labels.max())} but the model has "
                    f"{n_classes} classes (0..{n_classes - 1}); build a model with more "
                    "classes or relabel."
                )
            target = labels.astype(np.float32)
    else:
        if labels.max() > n_out:
            raise ValueError(
                f"Scribble labels contain value {int(labels.max())} but the model has "
                f"{n_out} classes: use 1 for background and 2..{n_out} for classes."
            )
        target = labels.astype(np.float32) - 1.0  # 0 (unannotated) becomes IGNORE
    return target


def check_targets(targets: Sequence[np.ndarray], n_classes: int, mode: str) -> None:
    """Raise ``ValueError`` unless the targets hold at least two annotated classes."""
    annotated = sum(int(np.count_nonzero(t >= 0)) for t in targets)
    if annotated == 0:
        raise ValueError(
            "The labels contain no annotated pixels; paint background (1) and "
            "objects (2) strokes before training."
        )
    present = set()
    for t in targets:
        present.update(np.unique(t[t >= 0]).astype(int).tolist())
    if len(present) < 2:
        if mode == "dense":
            hint = (
                "the labels are empty: paint some objects (values > 0) on the labels layer"
                if present == {0}
                else "every pixel is foreground: leave some background (0)"
            )
        else:
            hint = "paint background strokes with label 1 and objects with label 2"
        raise ValueError(f"Training needs at least two classes in the labels; {hint}.")


# ----------------------------------------------------------------------------- splitting and patches
def validation_split(
    target: np.ndarray, fraction: float, block: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    """Hold out square blocks of annotated pixels for validation.

    Takes a float32 ``(H, W)`` target and returns ``(train_target, val_target)``:
    the held-out blocks are ``IGNORE`` in the training target and are the only
    annotated pixels of the validation target, so validation measures labels the
    network never learnt from (the image itself stays visible as context).
    About ``fraction`` of the blocks that hold annotations are chosen;
    ``val_target`` is None when ``fraction`` is 0 or there are too few blocks.
    """
    if fraction <= 0:
        return target, None
    h, w = target.shape
    blocks = [
        (y0, x0)
        for y0 in range(0, h, block)
        for x0 in range(0, w, block)
        if np.any(target[y0:y0 + block, x0:x0 + block] >= 0)
    ]
    n_val = int(round(len(blocks) * fraction))
    if len(blocks) < 2 or n_val < 1:
        return target, None
    chosen = rng.choice(len(blocks), size=min(n_val, len(blocks) - 1), replace=False)
    held = np.zeros(target.shape, bool)
    for i in chosen:
        y0, x0 = blocks[int(i)]
        held[y0:y0 + block, x0:x0 + block] = True
    train_target = np.where(held, IGNORE, target).astype(np.float32)
    val_target = np.where(held, target, IGNORE).astype(np.float32)
    return train_target, val_target


def _pad_to(image: np.ndarray, target: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad image (reflect) and target (IGNORE) so both spatial sides are >= ``size``."""
    ph, pw = max(0, size - image.shape[0]), max(0, size - image.shape[1])
    if ph == 0 and pw == 0:
        return image, target
    image = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="symmetric")
    target = np.pad(target, ((0, ph), (0, pw)), constant_values=IGNORE)
    return image, target


def grid_patches(
    images: Sequence[np.ndarray], targets: Sequence[np.ndarray], size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``(H, W, C)`` images and ``(H, W)`` targets into non-overlapping patches.

    Returns ``(x, y)`` shaped ``(N, size, size, C)`` and ``(N, size, size, 1)``;
    borders are padded, padded target pixels are ``IGNORE``.
    """
    xs, ys = [], []
    for image, target in zip(images, targets):
        h = -(-image.shape[0] // size) * size
        w = -(-image.shape[1] // size) * size
        image = np.pad(image, ((0, h - image.shape[0]), (0, w - image.shape[1]), (0, 0)),
                       mode="symmetric")
        target = np.pad(target, ((0, h - target.shape[0]), (0, w - target.shape[1])),
                        constant_values=IGNORE)
        for y0 in range(0, h, size):
            for x0 in range(0, w, size):
                t = target[y0:y0 + size, x0:x0 + size]
                if np.any(t >= 0):
                    xs.append(image[y0:y0 + size, x0:x0 + size])
                    ys.append(t[..., None])
    if not xs:
        return (np.zeros((0, size, size, images[0].shape[-1]), np.float32),
                np.zeros((0, size, size, 1), np.float32))
    return np.stack(xs).astype(np.float32), np.stack(ys).astype(np.float32)


def augment_dihedral(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Apply one random flip / 90-degree rotation per sample to ``x`` and ``y`` (N, P, P, C)."""
    x, y = x.copy(), y.copy()
    for i in range(x.shape[0]):
        k = int(rng.integers(4))
        flip = bool(rng.integers(2))
        xi, yi = np.rot90(x[i], k, axes=(0, 1)), np.rot90(y[i], k, axes=(0, 1))
        if flip:
            xi, yi = xi[:, ::-1], yi[:, ::-1]
        x[i], y[i] = xi, yi
    return x, y


class PatchSampler:
    """Draw random training batches from normalised images and their targets.

    Parameters
    ----------
    images : list of float32 ``(H, W, C)`` arrays (already normalised).
    targets : list of float32 ``(H, W)`` arrays (class index or ``IGNORE``).
    patch_size : side of the square patches in pixels.
    batch_size : patches per batch.
    augment : random flips and 90-degree rotations.
    rng : source of randomness (seeded for reproducible training).

    Half of the patches are centred on a random annotated pixel, so sparse
    scribbles are seen often; the rest are uniform over the image.
    """

    def __init__(self, images, targets, patch_size: int, batch_size: int, augment: bool,
                 rng: np.random.Generator):
        self.patch_size, self.batch_size, self.augment, self.rng = patch_size, batch_size, augment, rng
        self.images, self.targets, self.annotated = [], [], []
        for image, target in zip(images, targets):
            image, target = _pad_to(image, target, patch_size)
            self.images.append(image)
            self.targets.append(target)
            self.annotated.append(np.flatnonzero(target >= 0))
        areas = np.array([t.size for t in self.targets], dtype=float)
        self.weights = areas / areas.sum()
        self.channels = self.images[0].shape[-1]

    def batch(self) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(x, y)`` shaped ``(B, P, P, C)`` and ``(B, P, P, 1)``, float32."""
        p, rng = self.patch_size, self.rng
        x = np.empty((self.batch_size, p, p, self.channels), np.float32)
        y = np.empty((self.batch_size, p, p, 1), np.float32)
        for i in range(self.batch_size):
            j = int(rng.choice(len(self.images), p=self.weights))
            image, target = self.images[j], self.targets[j]
            h, w = target.shape
            annotated = self.annotated[j]
            if annotated.size and rng.random() < 0.5:
                cy, cx = np.unravel_index(annotated[rng.integers(annotated.size)], (h, w))
                y0 = int(np.clip(cy - p // 2 + rng.integers(-p // 4, p // 4 + 1), 0, h - p))
                x0 = int(np.clip(cx - p // 2 + rng.integers(-p // 4, p // 4 + 1), 0, w - p))
            else:
                y0, x0 = int(rng.integers(h - p + 1)), int(rng.integers(w - p + 1))
            x[i] = image[y0:y0 + p, x0:x0 + p]
            y[i, ..., 0] = target[y0:y0 + p, x0:x0 + p]
        if self.augment:
            x, y = augment_dihedral(x, y, rng)
        return x, y
