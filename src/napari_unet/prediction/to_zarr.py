"""Larger-than-memory prediction from one zarr image to zarr folders, block by block: a plain
zarr array gives plain zarr arrays; an OME-Zarr (NGFF 0.4 or 0.5) image gives NGFF images
with its axes, scale and units, standalone or as ``labels/<name>`` inside it."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

__all__ = ["predict_zarr"]


def predict_zarr(model: Any, source: str | Path, labels_out: str | Path | None, options: Any, *,
                 probabilities_out: str | Path | None = None, axes: str | None = None,
                 progress: bool = True, label_name: str | None = None,
                 min_physical_size: float | None = None, **predict_options: Any) -> tuple[tuple[int, ...], Any]:
    """Predict the zarr image at ``source`` lazily and write labels (and, optionally,
    probabilities) as zarr folders, each written under a partial name and renamed when
    complete. One network pass for both. Returns the labels' ``(shape, dtype)``.

    ``model`` is a `UNetModel` or a model file; ``options`` a `LabelOptions`;
    ``predict_options`` are those of `napari_unet.prediction.api.iter_predict`. An
    OME-Zarr ``source`` is read at level 0 with its axes (``axes`` wins) and its outputs
    are NGFF images; with ``label_name`` the labels go to ``source/labels/<label_name>``
    (listed in its ``labels`` group; nothing else of ``source`` changes) instead of
    ``labels_out``. ``min_physical_size``: the smallest object in the image's units
    (`napari_unet.prediction.spacing`) instead of ``options.min_size``. The caller checks the output paths first
    (`napari_unet.io.outputs.check_outputs`).
    """
    try:
        import dask
        import zarr  # noqa: F401
    except ImportError:
        raise ValueError("reading and writing .zarr needs the zarr and dask packages: "
                         "pip install zarr dask") from None
    from ..io.metadata import input_axes, output_metas
    from ..io.zarr import open_zarr_image
    from ..model.files import resolve_model
    from .api import probabilities_and_labels
    from .spacing import with_file_spacing

    source = Path(source)
    if not source.is_dir():
        raise ValueError(f"Input {str(source)!r} does not exist (or is not a .zarr folder).")
    image, meta = open_zarr_image(source)
    ngff = isinstance(meta.native, tuple) and meta.native[0] == "ngff"
    if label_name and not ngff:
        raise ValueError(f"Labels can be written into {str(source)!r} only if it is an "
                         "OME-Zarr image; give an output .zarr path instead.")
    unet = resolve_model(model)
    axes = input_axes(meta, axes, image.shape, unet.config.in_channels, str(source))
    options = with_file_spacing(options, meta, axes, min_physical_size)
    probs, labels = probabilities_and_labels(unet, image, options, axes=axes, **predict_options)
    with _into(source, label_name, meta) as into:
        labels_out = into or labels_out
        targets = {labels_out: labels, **({probabilities_out: probs} if probabilities_out else {})}
        metas = output_metas(meta, axes, targets) if ngff else {}
        _write(targets, metas, labels_out, progress, dask)
    return labels.shape, labels.dtype


@contextlib.contextmanager
def _into(source: Path, label_name: str | None, meta: Any) -> Any:
    """With ``label_name``: yields ``source/labels/<label_name>`` (the ``labels`` group made
    if missing) and lists the label once the block wrote it; a failed block removes a
    group it made, so the input is left as it was. Without: yields None."""
    if not label_name:
        yield None
        return
    from ..io.ngff import labels_group, list_label

    made = not (source / "labels").exists()
    try:
        yield labels_group(source, meta) / label_name
    except BaseException:
        if made:
            import shutil

            shutil.rmtree(source / "labels", ignore_errors=True)
        raise
    list_label(source, label_name, meta)


def _write(targets: dict, metas: dict, labels_out: Any, progress: bool, dask: Any) -> None:
    """Every output computed in one pass, each under a partial name renamed when complete:
    NGFF images for those with an `ImageMeta` in ``metas``, plain zarr arrays otherwise."""
    from ..io.outputs import atomic_path

    with contextlib.ExitStack() as stack:
        stores = []
        for path, array in targets.items():
            tmp = stack.enter_context(atomic_path(path))
            if path in metas:
                from ..io.ngff import write_ngff

                stores.append(write_ngff(tmp, array, metas[path], name=Path(path).name,
                                         labels=path == labels_out))
            else:
                stores.append(array.to_zarr(str(tmp), compute=False))
        if progress:
            from dask.diagnostics import ProgressBar

            stack.enter_context(ProgressBar(out=sys.stderr))
        dask.compute(*stores)
