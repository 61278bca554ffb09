"""Translate between napari layers and the arrays the core works on (no ML here)."""

from __future__ import annotations

from typing import Any

import numpy as np


def layer_array(layer: Any) -> Any:
    """The full-resolution data of an Image/Labels layer (level 0 of a multiscale layer).

    Returns the layer's own array object (numpy, dask or zarr): never modify it.
    """
    data = layer.data
    if getattr(layer, "multiscale", False):
        data = data[0]
    return data


def layer_axes(layer: Any, n_channels_model: int | None = None, text: str = "") -> str:
    """Axes string for a layer: ``text`` (what the user typed) checked against the layer's
    shape, else a guess: YX / ZYX / TZYX, C last for RGB(A) layers, C first or last when
    that axis matches the model's channels. ``ValueError`` says what to type when the
    layer is ambiguous (e.g. a 3-plane stack that looks like an RGB picture)."""
    from ..common.arrays import check_axes, default_axes

    shape = tuple(layer_array(layer).shape)
    if text.strip():
        return check_axes(text.strip().upper(), shape)
    rgb = True if getattr(layer, "rgb", False) else None
    return default_axes(shape, n_channels_model or 1, rgb=rgb)


def few_planes_note(shape: tuple[int, ...], axes_text: str) -> str:
    """A hint for the status when a result of ``shape`` came from a layer of 2-4 planes read
    as a Z stack by guess (``axes_text`` empty): it may be a channels-first picture (CYX)."""
    if axes_text.strip() or len(shape) != 3 or not 2 <= shape[0] <= 4:
        return ""
    return (f"; its first axis ({shape[0]}) was read as Z planes: if it holds channels, "
            "set the axes to CYX")


def spatial_placement(layer: Any) -> dict[str, Any]:
    """``scale`` and ``translate`` of an image layer (napari leaves out an RGB axis), and its
    ``units`` (e.g. ``("micrometer", "micrometer")``) when any axis has one other than pixels."""
    placement = {"scale": tuple(layer.scale), "translate": tuple(layer.translate)}
    units = tuple(str(u) for u in getattr(layer, "units", ()) or ())
    if len(units) == len(placement["scale"]) and any(u != "pixel" for u in units):
        placement["units"] = units
    return placement


def physical_size(pixels: int, layer: Any, axes: str, linked: bool) -> str:
    """``pixels`` (an area in YX, or a volume in ZYX when ``linked``) of ``layer`` with
    ``axes`` in its own units, e.g. ``"3 micrometer²"``; ``""`` when its units are pixels
    or differ between those axes."""
    placement = without_channel(spatial_placement(layer), axes)
    spatial = axes.replace("C", "")
    which = "ZYX" if linked and "Z" in spatial else "YX"
    if "units" not in placement or len(placement["scale"]) != len(spatial):
        return ""
    sizes = {a: (s, u) for a, s, u in zip(spatial, placement["scale"], placement["units"])}
    units = {sizes[a][1] for a in which if a in sizes}
    if len(units) != 1 or "pixel" in units:
        return ""
    volume = float(np.prod([sizes[a][0] for a in which if a in sizes]))
    return f"{pixels * volume:.3g} {units.pop()}{'³' if len(which) == 3 else '²'}"


def without_channel(placement: dict[str, Any], axes: str) -> dict[str, Any]:
    """``placement`` for the labels of an image with ``axes``: the entry of a channel axis
    (e.g. the C of CYX) removed, so labels sit exactly on the image's spatial axes."""
    if "C" not in axes or len(placement["scale"]) != len(axes):
        return placement
    keep = [i for i, a in enumerate(axes) if a != "C"]
    return {key: tuple(value[i] for i in keep) for key, value in placement.items()}


def layer_spacing(layer: Any, axes: str) -> dict[str, float] | None:
    """An image layer's ``scale`` as the pixel sizes of its Z, Y and X ``axes`` (None when
    they do not match), so splits and linking measure what the viewer shows."""
    scale = without_channel(spatial_placement(layer), axes)["scale"]
    spatial = axes.replace("C", "")
    if len(scale) != len(spatial):
        return None
    return {a: float(v) for a, v in zip(spatial, scale) if a in "ZYX"}


def labels_snapshot(layer: Any) -> np.ndarray:
    """A copy of a Labels layer's data, safe to use in a worker while the user paints."""
    return np.array(layer_array(layer), copy=True)


def with_channels(layer: Any, extra: list, axes_text: str = "") -> tuple[Any, str]:
    """``layer`` and the ``extra`` image layers (e.g. what napari's ``channel_axis`` split
    an image into) stacked as the channels of one image.

    Returns ``(array, axes)``: the data with a leading channel axis (numpy, or dask when
    any layer is lazy) and ``"C"`` + the layers' spatial axes (``axes_text`` without C,
    or guessed). ``ValueError`` when a layer is RGB, the shapes differ, or the axes name
    a channel.
    """
    from ..common.arrays import check_axes, default_axes

    layers = [layer] + [other for other in extra if other is not layer]
    if any(getattr(other, "rgb", False) for other in layers):
        raise ValueError("RGB layers cannot be combined as channels: choose grey layers, or "
                         "use the RGB layer alone with a 3-channel model")
    data = [layer_array(other) for other in layers]
    shapes = sorted({tuple(d.shape) for d in data})
    if len(shapes) != 1:
        raise ValueError(f"the channel layers must all have one shape; got {shapes}")
    shape = shapes[0]
    spatial = check_axes(axes_text.strip().upper(), shape) if axes_text.strip() else \
        default_axes(shape, 1)
    if "C" in spatial:
        raise ValueError(f"each channel layer must hold one channel; the axes {spatial!r} "
                         "name a channel axis: give the layers' own axes, e.g. YX or ZYX")
    if any(type(d).__module__.startswith(("dask", "zarr")) for d in data):
        import dask.array as da

        return da.stack([da.asarray(d) for d in data]), "C" + spatial
    return np.stack([np.asarray(d) for d in data]), "C" + spatial


class LayerPairs:
    """The Train widget's list of (image, labels) layer names to train on together."""

    EMPTY = "the image/labels above"

    def __init__(self) -> None:
        self.names: list[tuple[str, str]] = []

    def __bool__(self) -> bool:
        return bool(self.names)

    def add(self, image: Any, labels: Any) -> str:
        """Add the pair of layers ``image`` and ``labels`` (once); returns the list as text."""
        if image is None or labels is None:
            raise ValueError("choose an image and a labels layer first")
        if (image.name, labels.name) not in self.names:
            self.names.append((image.name, labels.name))
        return "; ".join(f"{i} + {lab}" for i, lab in self.names)

    def clear(self) -> str:
        """Empty the list; returns its text."""
        self.names = []
        return self.EMPTY

    def chosen(self, viewer: Any, image: Any, labels: Any) -> list[tuple[Any, Any]]:
        """The (image layer, labels layer) pairs to train on: the list's, or the single pair
        ``image``/``labels`` chosen above it when the list is empty."""
        if self.names:
            missing = [n for pair in self.names for n in pair if n not in viewer.layers]
            if missing:
                raise ValueError(f"layers {missing} are no longer in the viewer; clear the pairs")
            return [(viewer.layers[i], viewer.layers[lab]) for i, lab in self.names]
        if image is None or labels is None:
            raise ValueError("choose an image layer and the labels layer painted on it")
        return [(image, labels)]
