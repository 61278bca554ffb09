"""NIfTI volumes (``.nii``, ``.nii.gz``) through nibabel (``pip install napari-unet[nifti]``).

Axis order: nibabel's arrays are indexed by voxel ``(i, j, k[, t])``; the engine's are
``ZYX`` (``TZYX``). The axes are reversed on reading, so the engine's Z is NIfTI's third
voxel axis k, Y its second j, X its first i (and T its fourth): ``array[z, y, x] ==
nifti[x, y, z]``. Nothing is resampled or reoriented: the network sees the voxels as
stored, and the affine keeps saying where they are. The pixel sizes are the header's
zooms (``X = zooms[0]``, ``Y = zooms[1]``, ``Z = zooms[2]``, ``T = zooms[3]``) in its
units (millimetres and seconds when the header says so).

Outputs of a NIfTI input are NIfTI files with the input's affine (sform and qform) and
header, their own dtype (labels: integers, no intensity scaling, intent "label"); the
axes are reversed back, so a round trip gives the identical affine and voxel grid. A
class axis (multi-class probabilities) becomes the fourth NIfTI dimension.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np

from .metadata import ImageMeta, canonical_unit

__all__ = ["NIFTI_SUFFIXES", "read_nifti", "nifti_header", "write_nifti"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
_LAYOUTS = {2: "YX", 3: "ZYX", 4: "TZYX"}
_NIFTI_UNITS = {"millimeter": "mm", "micrometer": "micron", "meter": "meter"}


def _nibabel() -> Any:
    try:
        import nibabel
    except ImportError:
        raise ValueError("NIfTI files (.nii, .nii.gz) need the nibabel package: "
                         "pip install napari-unet[nifti]") from None
    return nibabel


def _load(path: Path) -> Any:
    image = _nibabel().load(str(path))
    shape = image.shape
    while len(shape) > 3 and shape[-1] == 1:  # (x, y, z, 1): a volume
        shape = shape[:-1]
    if len(shape) not in _LAYOUTS:
        raise ValueError(f"{path.name!r} has {len(image.shape)} dimensions {image.shape}; "
                         "NIfTI images of 2 to 4 dimensions (x, y, z, t) can be segmented.")
    return image, shape


def nifti_header(path: Path) -> tuple[tuple[int, ...], np.dtype, ImageMeta]:
    """Shape (engine order), dtype and `ImageMeta` of a NIfTI file, without its voxels."""
    image, shape = _load(path)
    return tuple(int(n) for n in shape[::-1]), np.dtype(image.get_data_dtype()), \
        _meta(image, len(shape))


def read_nifti(path: Path) -> tuple[np.ndarray, ImageMeta]:
    """The voxels of a NIfTI file in the engine's order (``ZYX``: axes reversed) and its
    `ImageMeta` (axes, zooms, units; the affine and header to write outputs with)."""
    image, shape = _load(path)
    data = np.asanyarray(image.dataobj).reshape(shape)  # scaled if the header says so
    return np.ascontiguousarray(data.transpose()), _meta(image, len(shape))


def _meta(image: Any, ndim: int) -> ImageMeta:
    axes = _LAYOUTS[ndim]
    zooms = image.header.get_zooms()
    space, time = image.header.get_xyzt_units()
    scale = {a: float(zooms[i]) for i, a in enumerate("XYZT"[:ndim]) if i < len(zooms)}
    units = {a: canonical_unit(time if a == "T" else space) for a in scale}
    return ImageMeta(axes, scale, {a: u for a, u in units.items() if u},
                     native=("nifti", type(image), image.affine.copy(), image.header.copy()))


def write_nifti(partial: Path, path: Path, array: np.ndarray, meta: ImageMeta | None) -> None:
    """Write ``array`` (axes ``meta.axes``) to ``partial`` as the NIfTI file ``path`` asks
    for (gzip-compressed for ``.nii.gz``): with the input's affine and header when it was
    a NIfTI file, else an affine of the pixel sizes."""
    nib = _nibabel()
    axes = meta.axes if meta is not None and meta.axes else _LAYOUTS.get(array.ndim, "")
    if len(axes) != array.ndim:
        raise ValueError(f"{path.name!r}: NIfTI holds 2 to 4 dimensions, not shape {array.shape}.")
    spatial = axes.replace("C", "")
    data = np.moveaxis(array, axes.index("C"), -1) if "C" in axes else array
    data = np.transpose(data, list(range(len(spatial)))[::-1] + ([len(spatial)] if "C" in axes else []))
    image = _image(nib, data, meta)
    labels = np.issubdtype(data.dtype, np.integer)
    image.header.set_intent("label" if labels else "none")
    image.header["cal_min"], image.header["cal_max"] = 0, float(data.max(initial=0)) if labels else 1.0
    image.header.set_slope_inter(1.0, 0.0)  # labels are ids: never rescaled
    payload = image.to_bytes()
    if path.name.lower().endswith(".gz"):
        payload = gzip.compress(payload, compresslevel=6, mtime=0)
    partial.write_bytes(payload)


def _image(nib: Any, data: np.ndarray, meta: ImageMeta | None) -> Any:
    """A NIfTI image of ``data`` with the input's affine and header (its dtype set for
    ``data``), or, for an input of another format, an affine of its pixel sizes."""
    native = meta.native if meta is not None else None
    if isinstance(native, tuple) and native and native[0] == "nifti":
        _, kind, affine, header = native
        header = header.copy()
        header.set_data_dtype(data.dtype)
        image = kind(data, affine, header)
        image.set_qform(header.get_qform(), int(header["qform_code"]))
        image.set_sform(header.get_sform(), int(header["sform_code"]))
        return image
    scale = meta.spacing("XYZ") if meta is not None else (1.0, 1.0, 1.0)
    image = nib.Nifti1Image(data, np.diag([*scale, 1.0]))
    unit = meta.unit() if meta is not None else None
    if unit in _NIFTI_UNITS:
        image.header.set_xyzt_units(_NIFTI_UNITS[unit])
    return image
