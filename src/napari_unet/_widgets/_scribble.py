"""Scribble mode and the live preview: the layers the Train widget makes and updates while
a user paints and trains (napari and numpy only, no ML here)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._layers import layer_array, spatial_placement, without_channel

MAX_PREVIEW = 1024  # px: a larger field of view is previewed around its centre
MIN_PREVIEW = 64


def class_names_from_text(text: str) -> list[str]:
    """``"nucleus, cytoplasm"`` -> ``["background", "nucleus", "cytoplasm"]`` (``ValueError``
    for none or repeated names)."""
    names = [n.strip() for n in text.replace(";", ",").split(",") if n.strip()]
    if not names:
        raise ValueError("name at least one object class, e.g. 'nucleus' or 'nucleus, "
                         "cytoplasm'")
    if len(set(names)) != len(names) or "background" in names:
        raise ValueError(f"class names must differ from each other and from 'background'; "
                         f"got {names}")
    return ["background"] + names


def spatial_shape(layer: Any, axes: str) -> tuple[int, ...]:
    """The shape of ``layer``'s data without its channel axis (``axes`` names its axes)."""
    shape = tuple(layer_array(layer).shape)
    return tuple(s for s, a in zip(shape, axes) if a != "C")


def scribble_layer(viewer: Any, image: Any, axes: str) -> Any:
    """The Labels layer ``"<image> scribbles"`` to paint on: made empty (uint8, the image's
    spatial shape, scale and translate) unless one of that shape exists; it is selected
    and put in paint mode with label 2 (the first object class), brush 3 px."""
    name = f"{image.name} scribbles"
    shape = spatial_shape(image, axes)
    if name in viewer.layers and viewer.layers[name].data.shape == shape:
        layer = viewer.layers[name]
    else:
        placement = without_channel(spatial_placement(image), axes)
        layer = viewer.add_labels(np.zeros(shape, np.uint8), name=name, opacity=0.8, **placement)
    viewer.layers.selection.active = layer
    layer.brush_size = 3
    layer.selected_label = 2
    layer.mode = "paint"
    return layer


def legend(layer: Any, names: list[str]) -> str:
    """Rich text: a coloured square and the value to paint for each class of ``names``
    (background first, painted as 1) in ``layer``'s colours."""
    parts = []
    for value, name in enumerate(names, start=1):
        rgba = np.asarray(layer.get_color(value), float)[:3]
        colour = "#" + "".join(f"{int(round(c * 255)):02x}" for c in rgba)
        parts.append(f"<span style='color:{colour}'>&#9632;</span> {value} = {name}")
    return "paint " + ", ".join(parts) + " (0 = not painted)"


def preview_region(viewer: Any, image: Any, axes: str) -> dict:
    """What to preview while training: the YX plane of ``image`` on screen and, of it,
    the field of view (at least `MIN_PREVIEW`, at most `MAX_PREVIEW` px a side).

    Returns ``{"plane": flat plane index, "index": the plane's leading indices,
    "rows": (start, stop), "cols": (start, stop)}`` in data pixels.
    """
    shape = spatial_shape(image, axes)
    lead, (h, w) = shape[:-2], shape[-2:]
    point = np.asarray(image.world_to_data(viewer.dims.point), float)
    spatial = [i for i, a in enumerate(axes if len(point) == len(axes) else axes.replace("C", ""))
               if a != "C"]
    point = point[spatial] if len(point) > len(spatial) else point
    index = tuple(int(np.clip(round(p), 0, n - 1)) for p, n in zip(point[:len(lead)], lead))
    plane = int(np.ravel_multi_index(index, lead)) if lead else 0
    scene = getattr(viewer, "scene", None)  # napari >= 0.9; viewer.camera before
    camera = scene.camera if scene is not None else viewer.camera
    world = np.array(viewer.dims.point, float)
    world[-2:] = camera.center[-2:]
    centre = np.asarray(image.world_to_data(world))[-2:]
    size = np.asarray(viewer.canvas.size, float)  # screen pixels, (height, width)
    visible = size / max(camera.zoom, 1e-6) / np.abs(np.asarray(image.scale[-2:]))
    spans = []
    for c, extent, n in zip(centre, visible, (h, w)):
        side = int(np.clip(extent, min(MIN_PREVIEW, n), min(MAX_PREVIEW, n)))
        start = int(np.clip(round(c - side / 2), 0, n - side))
        spans.append((start, start + side))
    return {"plane": plane, "index": index, "rows": spans[0], "cols": spans[1]}


def preview_layer(viewer: Any, image: Any, axes: str, region: dict, labels: np.ndarray) -> Any:
    """Show the preview ``labels`` (YX) as the Labels layer ``"<image> preview"`` at its
    place in ``image`` (its plane and region), adding the layer or updating it."""
    placement = without_channel(spatial_placement(image), axes)
    lead = len(region["index"])
    offset = (*region["index"], region["rows"][0], region["cols"][0])
    scale = np.asarray(placement["scale"][-(lead + 2):], float)
    translate = np.asarray(placement["translate"][-(lead + 2):], float) + scale * offset
    data = labels.reshape((1,) * lead + labels.shape)
    name = f"{image.name} preview"
    if name in viewer.layers:
        layer = viewer.layers[name]
        layer.data = data
        layer.scale, layer.translate = scale, translate
        return layer
    active = viewer.layers.selection.active  # e.g. the scribble layer being painted
    layer = viewer.add_labels(data, name=name, scale=scale, translate=translate, opacity=0.5,
                              blending="translucent_no_depth",
                              metadata={"napari_unet": {"preview": True}})
    if active is not None:
        viewer.layers.selection.active = active  # painting goes on where it was
    return layer
