"""OME-Zarr images (NGFF 0.4 on zarr v2, NGFF 0.5 on zarr v3) through ome-zarr-py
(``pip install napari-unet[ome-zarr]``).

Reading gives the multiscales' level 0 as a lazy dask array with its `ImageMeta`: the
axes' names as engine letters (``t`` T, ``c`` C, ``z`` Z, ``y`` Y, ``x`` X; NGFF orders
them t, c, z, y, x), the level's ``scale`` (times the multiscales' own, if any) per axis
and the axes' units (NGFF names: ``"micrometer"``, ``"second"``). Writing gives an NGFF
image of one level with the same axes, scale, translation and units, in the input's
NGFF version (0.5 for inputs of other kinds): a standalone image, or a label image
``labels/<name>`` inside an existing OME-Zarr (`labels_group`, `list_label`). A class axis
(multi-class probabilities) is written as the ``c`` axis, before z, y and x.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Iterator

from .metadata import ImageMeta, canonical_unit

__all__ = ["is_ngff", "read_ngff", "write_ngff", "labels_group", "list_label"]

_LETTERS = {"t": "T", "c": "C", "z": "Z", "y": "Y", "x": "X"}
_TYPES = {"time": "T", "channel": "C"}


def _ome_zarr() -> Any:
    try:
        import ome_zarr.writer  # noqa: F401
        import zarr  # noqa: F401
    except ImportError:
        raise ValueError("OME-Zarr images need the ome-zarr package: "
                         "pip install napari-unet[ome-zarr]") from None
    import ome_zarr

    return ome_zarr


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ome-zarr-py logs each version it tries and each label without a parent as warnings."""
    log = logging.getLogger("ome_zarr")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _attributes(path: Path) -> dict | None:
    """The group attributes of ``path`` (NGFF 0.5 nests them under ``"ome"``), or None."""
    try:
        import zarr

        node = zarr.open(str(path), mode="r")
    except Exception:  # noqa: BLE001 - not zarr, or not readable: not NGFF
        return None
    if not isinstance(node, zarr.Group):
        return None
    attrs = dict(node.attrs)
    return attrs.get("ome", attrs)


def is_ngff(path: str | Path) -> bool:
    """Whether ``path`` is a zarr group holding an NGFF multiscales image."""
    attrs = _attributes(Path(path))
    return bool(attrs and attrs.get("multiscales"))


def read_ngff(path: str | Path) -> tuple[Any, ImageMeta]:
    """Level 0 of the OME-Zarr image at ``path`` (a dask array) and its `ImageMeta`."""
    path = Path(path)
    _ome_zarr()
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader

    attrs = _attributes(path) or {}
    version = str(attrs.get("version") or attrs["multiscales"][0].get("version", "0.4"))
    with _quiet():
        location = parse_url(str(path))
        if location is None:
            raise ValueError(f"{str(path)!r} is not an OME-Zarr image.")
        node = next((n for n in Reader(location)() if any(isinstance(s, Multiscales)
                                                          for s in n.specs)), None)
    if node is None or not node.data:
        raise ValueError(f"{str(path)!r} holds no NGFF multiscales image.")
    axes_meta = node.metadata.get("axes") or [{"name": a} for a in "tczyx"[-node.data[0].ndim:]]
    axes = "".join(_letter(a, path) for a in axes_meta)
    scale, translation = _level0_transform(node.metadata, attrs, len(axes))
    units = {a: canonical_unit(d.get("unit")) for a, d in zip(axes, axes_meta)}
    meta = ImageMeta(axes, {a: s for a, s in zip(axes, scale) if a != "C"},
                     {a: u for a, u in units.items() if u and a != "C"},
                     native=("ngff", version, dict(zip(axes, translation))))
    return node.data[0], meta


def _letter(axis: Any, path: Path) -> str:
    name = (axis.get("name") if isinstance(axis, dict) else str(axis)).lower()
    kind = axis.get("type") if isinstance(axis, dict) else None
    letter = _LETTERS.get(name) or _TYPES.get(kind)
    if letter is None:
        raise ValueError(f"{str(path)!r}: the axis {name!r} is not one of t, c, z, y, x; give "
                         "an image with those axes.")
    return letter


def _level0_transform(metadata: dict, attrs: dict, ndim: int) -> tuple[list[float], list[float]]:
    """(scale, translation) of level 0, with the multiscales' own transformation applied."""
    scale, translation = [1.0] * ndim, [0.0] * ndim
    level = (metadata.get("coordinateTransformations") or [[]])[0]
    outer = attrs.get("multiscales", [{}])[0].get("coordinateTransformations") or []
    for transform in list(level) + list(outer):
        if transform.get("type") == "scale" and "scale" in transform:
            translation = [t * s for t, s in zip(translation, transform["scale"])]
            scale = [a * float(b) for a, b in zip(scale, transform["scale"])]
        elif transform.get("type") == "translation" and "translation" in transform:
            translation = [a + float(b) for a, b in zip(translation, transform["translation"])]
    return scale, translation


def _format(meta: ImageMeta | None) -> Any:
    from ome_zarr.format import FormatV04, FormatV05

    native = meta.native if meta is not None else None
    old = isinstance(native, tuple) and native[0] == "ngff" and native[1].startswith("0.4")
    return FormatV04() if old else FormatV05()


def _arguments(array: Any, meta: ImageMeta | None) -> tuple[Any, dict]:
    """``array`` with its class axis where NGFF wants it, and ome-zarr's keyword arguments
    (axes, scale, units, translation) for it."""
    axes = meta.axes if meta is not None and meta.axes else "TZYX"[-array.ndim:]
    if len(axes) != array.ndim:
        raise ValueError(f"Axes {axes!r} do not fit an array of shape {tuple(array.shape)}.")
    if "C" in axes:  # NGFF: t, c, z, y, x
        import dask.array as da

        order = [axes.index(a) for a in "TCZYX" if a in axes]
        array, axes = da.transpose(da.asarray(array), order), "".join(axes[i] for i in order)
    scale = dict(meta.scale) if meta is not None else {}
    units = dict(meta.units) if meta is not None else {}
    kwargs = {"axes": axes.lower(), "fmt": _format(meta), "scale_factors": (),
              "scale": {a.lower(): float(scale.get(a, 1.0)) for a in axes},
              "axes_units": {a.lower(): u for a, u in units.items() if a in axes and a != "C"}}
    native = meta.native if meta is not None else None
    if isinstance(native, tuple) and native[0] == "ngff" and any(native[2].values()):
        transform = [{"type": "scale", "scale": [kwargs["scale"][a.lower()] for a in axes]},
                     {"type": "translation",
                      "translation": [float(native[2].get(a, 0.0)) for a in axes]}]
        kwargs["coordinate_transformations"] = [transform]
    return array, kwargs


def write_ngff(partial: Path, array: Any, meta: ImageMeta | None, *, name: str = "image",
               labels: bool = False) -> Any:
    """Write ``array`` (numpy or dask; axes ``meta.axes``) as an NGFF image group at
    ``partial`` (a new folder). Returns what computes a dask array's blocks (compute it
    with the other outputs of one pass); nothing for numpy. ``labels`` adds the
    ``image-label`` metadata."""
    _ome_zarr()
    import zarr
    from ome_zarr.writer import write_image

    array, kwargs = _arguments(array, meta)
    fmt = kwargs["fmt"]
    group = zarr.open_group(str(partial), mode="w", zarr_format=fmt.zarr_format)
    with _quiet():
        delayed = write_image(array, group, name=name, compute=False, **kwargs)
    if labels:  # what ome-zarr's write_label_metadata writes, on this group itself
        if fmt.version.startswith("0.4"):
            group.attrs["image-label"] = {"version": fmt.version}
        else:
            group.attrs["ome"] = {**dict(group.attrs).get("ome", {}),
                                  "image-label": {"version": fmt.version}}
    return delayed


def labels_group(image_path: Path, meta: ImageMeta) -> Path:
    """The ``labels`` group of the OME-Zarr image at ``image_path`` (made, listing no label,
    when missing), where a label image is written; the image itself is not touched."""
    _ome_zarr()
    import zarr

    root = zarr.open_group(str(image_path), mode="r+")
    if "labels" not in root:
        group = root.create_group("labels")
        if _format(meta).version.startswith("0.4"):
            group.attrs["labels"] = []
        else:
            group.attrs["ome"] = {"version": _format(meta).version, "labels": []}
    return image_path / "labels"


def list_label(image_path: Path, name: str, meta: ImageMeta) -> None:
    """Add ``name`` to the label images the ``labels`` group of ``image_path`` lists."""
    import zarr

    group = zarr.open_group(str(image_path / "labels"), mode="r+")
    attrs = dict(group.attrs)
    nested = not _format(meta).version.startswith("0.4")
    listing = list((attrs.get("ome", {}) if nested else attrs).get("labels", []))
    if name not in listing:
        listing.append(name)
    if nested:
        group.attrs["ome"] = {**attrs.get("ome", {}), "version": _format(meta).version,
                              "labels": listing}
    else:
        group.attrs["labels"] = listing
