"""Whole folders: every image of a folder predicted with one model, resumable.

`iter_predict_folder` loads the model once, predicts each TIFF, PNG or zarr
image of a folder (not its subfolders) in name order, writes the labels (and,
optionally, the probabilities) under the same name into another folder, and
yields a `FileResult` per file. Files whose outputs exist whole (they read back, with the
shapes the input gives) are skipped unless ``overwrite``, so an interrupted run resumes
where it stopped; a truncated or empty output is done again. A failing file is
recorded and the others go on. At the end ``summary.csv`` lists every file: its
status, objects, foreground fraction and seconds. `predict_folder` drains it.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Generator

import numpy as np

from ..common.log import logger
from ..io.images import (
    IMAGE_SUFFIXES,
    ImageFile,
    image_stem,
    image_suffix,
    read_image_and_meta,
    write_images,
)
from ..io.nifti import NIFTI_SUFFIXES
from ..io.metadata import input_axes, output_metas
from ..io.ngff import is_ngff
from ..io.zarr import is_zarr, open_zarr_image
from .tiling import check_run_options
from .cluster import Cluster
from .lazy import ModelHandle
from .to_zarr import predict_zarr

__all__ = ["FileResult", "list_images", "iter_predict_folder", "predict_folder", "SUMMARY"]

SUMMARY = "summary.csv"


@dataclass
class FileResult:
    """One input file: ``status`` is ``"done"``, ``"skipped"`` (its output existed) or
    ``"failed"`` (``error`` says why); ``objects`` counts instance ids (or classes
    present, for class maps), ``foreground`` is the labelled fraction of pixels and
    ``seconds`` the time spent on it; ``index`` counts files from 1 out of ``total``."""

    file: str
    output: str
    status: str
    objects: int | None = None
    foreground: float | None = None
    seconds: float = 0.0
    error: str = ""
    index: int = 0
    total: int = 0


def list_images(folder: str | Path) -> list[Path]:
    """The TIFF, PNG, NIfTI and ``.zarr`` images directly in ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"Input folder {str(folder)!r} does not exist or is not a folder.")
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and (
        (p.is_file() and image_suffix(p) in IMAGE_SUFFIXES) or (p.is_dir() and is_zarr(p))))


def _plan(in_dir: Path, out_dir: Path, probabilities_dir: Path | None
          ) -> list[tuple[Path, Path, Path | None]]:
    """(input, labels output, probabilities output) per image; refuses what could lose data."""
    for name, folder in (("output folder", out_dir), ("probabilities folder", probabilities_dir)):
        if folder is not None and os.path.realpath(folder) == os.path.realpath(in_dir):
            raise ValueError(f"The {name} {str(folder)!r} is the input folder; choose another "
                             "folder, so that no input can be overwritten.")
        if folder is not None:
            _check_writable(name, folder)
    if probabilities_dir is not None and os.path.realpath(probabilities_dir) == os.path.realpath(out_dir):
        raise ValueError("Probabilities and labels need separate folders (same file names).")
    images = list_images(in_dir)
    if not images:
        raise ValueError(f"No images in {str(in_dir)!r}: expected .tif, .tiff, .png files or "
                         ".zarr folders directly inside it.")
    plan, seen = [], {}
    for image in images:
        stem = image.name[:-len(".ome.zarr")] if image.name.lower().endswith(".ome.zarr") \
            else image_stem(image)
        name = stem + _output_suffix(image)
        if name in seen:
            raise ValueError(f"{seen[name]!r} and {image.name!r} would both be written as "
                             f"{name!r}; rename one of them.")
        seen[name] = image.name
        plan.append((image, out_dir / name,
                     None if probabilities_dir is None else probabilities_dir / name))
    return plan


def _output_suffix(image: Path) -> str:
    """An output's format: zarr for zarr, NIfTI (keeping its affine) for NIfTI, else TIFF."""
    if is_zarr(image):
        return ".ome.zarr" if is_ngff(image) else ".zarr"
    return image_suffix(image) if image_suffix(image) in NIFTI_SUFFIXES else ".tif"


def _check_writable(name: str, folder: Path) -> None:
    """``ValueError`` unless ``folder`` can be written to, or made in a folder that can:
    found before any model is loaded or any image read."""
    where = folder if folder.exists() else folder.parent
    if not where.is_dir():
        raise ValueError(f"The {name} {str(folder)!r} cannot be made: {str(where)!r} "
                         f"{'is not a folder' if where.exists() else 'does not exist'}; "
                         "create it first.")
    if not os.access(where, os.W_OK | os.X_OK):
        raise ValueError(f"The {name} {str(where)!r} is not writable; choose a folder you "
                         "can write to.")


def iter_predict_folder(model: Any, in_dir: str | Path, out_dir: str | Path, options: Any = None,
                        *, probabilities_dir: str | Path | None = None, overwrite: bool = False,
                        axes: str | None = None, scheduler: str | None = None,
                        **predict_options: Any
                        ) -> Generator[FileResult, None, list[FileResult]]:
    """Predict every image of ``in_dir`` into ``out_dir``; yields and returns `FileResult`s.

    ``model``: a `UNetModel` or a model file (loaded once). ``options``: a
    `LabelOptions` (default: instance labels at the model's threshold). Labels
    are written as ``<name>.tif`` (``<name>.zarr`` for zarr inputs, computed
    block by block); with ``probabilities_dir``, the probabilities too.
    ``out_dir`` (and ``probabilities_dir``) are created if missing (their parent
    must exist); neither may be ``in_dir``. ``predict_options`` are those of `iter_predict`,
    and ``min_physical_size``: the smallest object in each file's own units (area per plane,
    volume when linking across Z; `napari_unet.prediction.spacing`) instead of
    ``options.min_size``. With ``scheduler`` (a ``dask.distributed`` scheduler's address)
    the files run as tasks on that cluster and the blocks of zarr inputs as its dask tasks
    (`napari_unet.prediction.cluster`); results come as files finish, with the same
    outputs, resume rules and ``summary.csv`` (in file order) as a local run.
    """
    from ..labels.options import LabelOptions
    from ..model.files import resolve_model

    in_dir, out_dir = Path(in_dir), Path(out_dir)
    probabilities_dir = None if probabilities_dir is None else Path(probabilities_dir)
    options = LabelOptions() if options is None else options
    plan = _plan(in_dir, out_dir, probabilities_dir)
    unet = resolve_model(model)
    check_run_options(unet.config, predict_options.get("tile_size"),
                      predict_options.get("batch_size"), predict_options.get("memory_budget"))
    with contextlib.ExitStack() as stack:  # an unreachable scheduler leaves no folder behind
        cluster = None if scheduler is None else stack.enter_context(Cluster(scheduler))
        for folder in (out_dir, probabilities_dir):
            if folder is not None:
                folder.mkdir(parents=False, exist_ok=True)
        results = yield from _run_plan(unet, plan, options, axes, overwrite, predict_options,
                                       cluster)
    results.sort(key=lambda r: r.index)
    _write_summary(out_dir / SUMMARY, results)
    return results


def _run_plan(unet: Any, plan: list, options: Any, axes: str | None, overwrite: bool,
              predict_options: dict, cluster: Cluster | None
              ) -> Generator[FileResult, None, list[FileResult]]:
    """Each planned file skipped, predicted here, or (files, with a ``cluster``) sent to a
    worker; zarr inputs run here, their blocks on the cluster's workers."""
    results = []

    def done(result: FileResult, index: int) -> FileResult:
        result.index, result.total = index, len(plan)
        _log(result)
        results.append(result)
        return result

    handle = None
    for index, (source, target, probs_target) in enumerate(plan, 1):
        if not overwrite and _done_already(unet, source, target, probs_target, axes):
            yield done(FileResult(source.name, target.name, "skipped"), index)
        elif cluster is not None and not is_zarr(source):
            handle = handle if handle is not None else cluster.scatter(ModelHandle(unet))
            cluster.submit(_predict_on_worker, handle, index, source, target, probs_target,
                           options, axes, predict_options)
        else:
            with _blocks_on(cluster):
                result = _predict_one(unet, source, target, probs_target, options, axes,
                                      predict_options)
            yield done(result, index)
    for index, result in cluster.completed() if cluster is not None else ():
        yield done(result, index)
    return results


def _blocks_on(cluster: Cluster | None) -> Any:
    """A context in which dask computes on ``cluster`` (no change without one)."""
    if cluster is None:
        return contextlib.nullcontext()
    import dask

    return dask.config.set(scheduler=cluster.scheduler)


def _predict_on_worker(handle: Any, index: int, *args: Any) -> tuple[int, FileResult]:
    """`_predict_one` as a cluster task: the model from its handle (loaded once per worker)."""
    return index, _predict_one(handle.get(), *args)


def _predict_one(unet: Any, source: Path, target: Path, probs_target: Path | None,
                 options: Any, axes: str | None, predict_options: dict) -> FileResult:
    """Predict one file; a ``ValueError`` or ``OSError`` becomes a ``"failed"`` result."""
    started = time.perf_counter()
    try:
        if is_zarr(source):
            predict_zarr(unet, source, target, options, probabilities_out=probs_target,
                         axes=axes, progress=False, **predict_options)
            labels = open_zarr_image(target)[0]
        else:
            labels = _predict_file(unet, source, target, probs_target, options, axes,
                                   predict_options)
        objects, foreground = _counts(labels, options)
    except (ValueError, OSError, MemoryError) as err:
        return FileResult(source.name, target.name, "failed", seconds=time.perf_counter() - started,
                          error=str(err))
    return FileResult(source.name, target.name, "done", objects, foreground,
                      round(time.perf_counter() - started, 3))


def _predict_file(unet: Any, source: Path, target: Path, probs_target: Path | None,
                  options: Any, axes: str | None, predict_options: dict) -> np.ndarray:
    """Predict an image file, write its outputs with its axes and pixel sizes (both
    replaced together, or neither) and return the labels."""
    from .api import probabilities_and_labels
    from .spacing import with_file_spacing

    kwargs = dict(predict_options)
    physical = kwargs.pop("min_physical_size", None)
    image, meta = read_image_and_meta(source)
    axes = input_axes(meta, axes, image.shape, unet.config.in_channels, source.name)
    options = with_file_spacing(options, meta, axes, physical)
    probs, labels = probabilities_and_labels(unet, image, options, axes=axes,
                                             probabilities=probs_target is not None, **kwargs)
    outputs = {target: labels}
    if probs_target is not None:
        outputs[probs_target] = probs  # float32, or uint8 (``probabilities_as``)
    write_images(outputs, output_metas(meta, axes, outputs))
    return labels


def _log(result: FileResult) -> None:
    """One line per file on the library's logger (a failure as a warning)."""
    if result.status == "failed":
        logger.warning("%s failed: %s", result.file, result.error)
    else:
        logger.info("%s -> %s: %s (%d of %d)", result.file, result.output, result.status,
                    result.index, result.total)


def _done_already(unet: Any, source: Path, target: Path, probs_target: Path | None,
                  axes: str | None) -> bool:
    """Whether an earlier run finished ``source``: its outputs exist, read whole and have the
    shapes ``source`` gives (labels: its spatial shape; probabilities: also a class axis
    for a multi-class model). A truncated, empty or foreign file is done again."""
    from ..common.arrays import resolve_axes

    try:
        shape, file_axes = _header(source)
        resolved = resolve_axes(axes or file_axes, shape, unet.config.in_channels)
        spatial_axes = resolved.replace("C", "")
        spatial = tuple(n for n, a in zip(shape, resolved) if a != "C")
        wanted = [(target, spatial, spatial_axes)]
        if probs_target is not None:
            k = unet.config.n_classes
            wanted.append((probs_target, spatial + ((k,) if k > 1 else ()),
                           spatial_axes + ("C" if k > 1 else "")))
        return all(_shape_in(path, order) == shape for path, shape, order in wanted)
    except (ValueError, OSError):
        return False


def _shape_in(path: Path, axes: str) -> tuple[int, ...]:
    """The shape of an output read whole (a truncated one raises ``ValueError``), in the
    order of ``axes`` when the file names its axes (ImageJ keeps classes before Y and X)."""
    shape, file_axes = _header(path, whole=True)
    if file_axes and sorted(file_axes) == sorted(axes):
        return tuple(shape[file_axes.index(a)] for a in axes)
    return shape


def _header(path: Path, whole: bool = False) -> tuple[tuple[int, ...], str | None]:
    """The shape of an image file or zarr array and the axes it names (None: none); with
    ``whole`` a file is read entirely."""
    if is_zarr(path):
        image, meta = open_zarr_image(path)
        return tuple(image.shape), meta.axes
    if whole:
        array, meta = read_image_and_meta(path)
        return tuple(array.shape), meta.axes
    header = ImageFile(path)
    return header.shape, header.axes


def _counts(labels: Any, options: Any) -> tuple[int, float]:
    """(objects, foreground fraction): the largest id for instance labels, else the number
    of non-zero classes present."""
    labels = np.asarray(labels)
    objects = int(labels.max()) if options.instances else int(np.count_nonzero(np.unique(labels)))
    return objects, round(float(np.count_nonzero(labels)) / labels.size, 6)


def _write_summary(path: Path, results: list[FileResult]) -> None:
    """``summary.csv``: one row per file; skipped files keep their row from the last run."""
    from ..io.outputs import atomic_path

    previous = {}
    if path.exists():
        with open(path, newline="", encoding="utf-8") as f:
            previous = {row["file"]: row for row in csv.DictReader(f)}
    names = [f.name for f in fields(FileResult) if f.name not in ("index", "total")]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=names)
    writer.writeheader()
    for result in results:
        row = {k: v for k, v in asdict(result).items() if k in names}
        old = previous.get(result.file)
        if result.status == "skipped" and old and old.get("status") == "done":
            row = {**{k: old.get(k, "") for k in names}, "status": "skipped (done earlier)"}
        writer.writerow(row)
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue(), encoding="utf-8")


def predict_folder(model: Any, in_dir: str | Path, out_dir: str | Path, options: Any = None, *,
                   callback: Callable[[FileResult], None] | None = None,
                   **kwargs: Any) -> list[FileResult]:
    """Like `iter_predict_folder`, returning the list of `FileResult`s; ``callback``
    receives each one as its file finishes."""
    from ..common.progress import drain

    return drain(iter_predict_folder(model, in_dir, out_dir, options, **kwargs), callback)
