"""Arrays as the user gives them, checked and reshaped: dtypes, sizes, values, label
images, axes strings and the planes the network sees.

Axes strings name each axis of an array with T, Z, Y, X and optionally C
(channels), e.g. ``"YX"``, ``"ZYX"``, ``"TZYXC"``, ``"CYX"``. The network sees
planes shaped ``(N, H, W, C)``. Nothing here modifies its inputs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

MAX_LABEL = 2**31 - 1  # label ids and class numbers above this are not labels
SPATIAL_LAYOUTS = ("YX", "ZYX", "TYX", "TZYX")


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
            f"model expects {expected}; build a model with {found} input channels "
            f"(in_channels={found}), or choose another image or axes."
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
        hint = ""
        if len(shape) == arr.ndim + 1 and tuple(shape[1:]) == arr.shape and 2 <= shape[0] <= 4:
            hint = (f" If the image's first axis ({shape[0]}) is its channels, not Z planes, "
                    f"set its axes to C{'YX' if arr.ndim == 2 else 'ZYX'}.")
        raise ValueError(
            f"The {what} have shape {arr.shape} but the image has spatial shape "
            f"{tuple(shape)}; paint the labels on a layer of the same size as the image."
            + hint
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


def default_axes(shape: tuple[int, ...], in_channels: int, rgb: bool | None = None) -> str:
    """Guess the axes string (e.g. ``"YX"``, ``"ZYXC"``) of an array of ``shape``.

    A last axis of size 3 or 4 equal to ``in_channels`` (or ``rgb=True``) is the
    channel axis, else a first axis equal to ``in_channels`` (> 1); otherwise a 3D
    array is ZYX and a 4D array TZYX. An (H, W, 3|4) array on a one-channel model
    is refused unless ``rgb`` says how to read it.
    """
    ndim = len(shape)
    if rgb is None and in_channels > 1 and 3 <= ndim <= 5 and shape[0] == in_channels \
            and shape[-1] != in_channels:
        return "C" + {3: "YX", 4: "ZYX", 5: "TZYX"}[ndim]  # channels first, e.g. CYX
    has_channel = bool(rgb) if rgb is not None else (
        in_channels > 1 and ndim >= 3 and shape[-1] == in_channels
    )
    n_spatial = ndim - (1 if has_channel else 0)
    if n_spatial < 2 or n_spatial > 4:
        raise ValueError(
            f"Cannot interpret an array of shape {shape}: expected YX, ZYX, TYX or "
            "TZYX, optionally with a channel axis. Give its axes (the axes field, or "
            "axes=... / --axes)."
        )
    if rgb is None and not has_channel and ndim == 3 and shape[-1] in (3, 4) and min(shape[:2]) > 4:
        raise ValueError(
            f"The image of shape {shape} looks like an RGB(A) picture (last axis {shape[-1]}) "
            f"but the model takes {in_channels} channel(s). Set the axes to YXC (axes='YXC') "
            f"with a model built for {shape[-1]} input channels, convert the image to grey, "
            "or set them to ZYX if it really is a stack of planes."
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


def to_units(image: np.ndarray, axes: str, ndim: int = 2) -> tuple[np.ndarray, tuple[int, ...]]:
    """What a ``ndim``-D network takes, one unit at a time: planes ``(N, H, W, C)``
    (`to_planes`) for 2, volumes ``(N, Z, H, W, C)`` for 3. Returns the units and the
    leading shape (e.g. ``(T,)``) `from_planes` needs; ``ValueError`` when a 3D network
    gets an image without a Z axis."""
    if ndim == 2:
        return to_planes(image, axes)
    if "Z" not in axes:
        raise ValueError(f"a 3D network labels volumes, but this image's axes are {axes!r} "
                         "(no Z): give a stack with its axes (e.g. 'ZYX'), or use a 2D model "
                         "for single planes.")
    planes, lead = to_planes(image, axes)
    return planes.reshape((-1, lead[-1]) + planes.shape[1:]), lead[:-1]


def from_planes(planes: np.ndarray, lead: tuple[int, ...]) -> np.ndarray:
    """Inverse of `to_planes` (and `to_units`) for a per-unit result shaped ``(N, H, W,
    ...)`` (or ``(N, Z, H, W, ...)``)."""
    return planes.reshape(tuple(lead) + planes.shape[1:])


