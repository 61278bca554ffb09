"""Larger-than-memory prediction from one zarr array to zarr folders, block by block."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

__all__ = ["predict_zarr"]


def predict_zarr(model: Any, source: str | Path, labels_out: str | Path, options: Any, *,
                 probabilities_out: str | Path | None = None, axes: str | None = None,
                 progress: bool = True, **predict_options: Any) -> tuple[tuple[int, ...], Any]:
    """Predict the zarr array at ``source`` lazily and write labels (and, optionally,
    probabilities) as zarr folders, each written under a partial name and renamed when
    complete. One network pass for both. Returns the labels' ``(shape, dtype)``.

    ``model`` is a `UNetModel` or a model file; ``options`` a `LabelOptions`;
    ``predict_options`` are those of `napari_unet.prediction.api.iter_predict`. The
    caller checks the output paths first (`napari_unet.io.outputs.check_outputs`).
    """
    try:
        import dask
        import dask.array as da
        import zarr  # noqa: F401
    except ImportError:
        raise ValueError("reading and writing .zarr needs the zarr and dask packages: "
                         "pip install zarr dask") from None
    from ..io.outputs import atomic_path
    from .api import probabilities_and_labels

    if not Path(source).is_dir():
        raise ValueError(f"Input {str(source)!r} does not exist (or is not a .zarr folder).")
    try:
        image = da.from_zarr(str(source))
    except Exception as err:  # noqa: BLE001 - any zarr failure means an unreadable input
        raise ValueError(f"Could not read {str(source)!r} as a zarr array: {err}") from err
    probs, labels = probabilities_and_labels(model, image, options, axes=axes, **predict_options)
    targets = [(labels, labels_out)] + ([(probs, probabilities_out)] if probabilities_out else [])
    with contextlib.ExitStack() as stack:
        tmps = [stack.enter_context(atomic_path(path)) for _, path in targets]
        stores = [arr.to_zarr(str(tmp), compute=False) for (arr, _), tmp in zip(targets, tmps)]
        if progress:
            from dask.diagnostics import ProgressBar

            stack.enter_context(ProgressBar(out=sys.stderr))
        dask.compute(*stores)
    return labels.shape, labels.dtype
