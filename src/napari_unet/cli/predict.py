"""``napari-unet predict``: an image file, a folder of them, or a zarr array, with the
outputs checked before any work. Returns the exit status; expected failures raise
``ValueError``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..io.zarr import is_zarr
from .progress import TileBar, progress_bar

__all__ = ["cmd_predict"]


def _label_options(args: argparse.Namespace):
    from ..labels.options import LabelOptions

    return LabelOptions(args.threshold, not args.semantic, args.min_size, args.split_touching,
                        args.link_planes, args.seed_threshold)


def cmd_predict(args: argparse.Namespace) -> int:
    from ..io.images import check_image_output, image_suffix, read_image_and_meta, write_images
    from ..io.nifti import NIFTI_SUFFIXES
    from ..io.metadata import input_axes, output_metas
    from ..io.outputs import check_outputs
    from ..model.files import load_model
    from ..prediction.api import probabilities_and_labels
    from ..prediction.spacing import with_file_spacing

    options = _label_options(args)
    if args.min_physical_size is not None and args.min_size is not None:
        raise ValueError("give the smallest object either in pixels (--min-size) or in the "
                         "file's units (--min-physical-size), not both.")
    if args.uncertainty and (Path(args.input).is_dir() or is_zarr(args.input)):
        raise ValueError("--uncertainty works on single image files; for folders run them one "
                         "by one, for .zarr arrays use napari_unet.prediction.uncertainty (lazy) in Python.")
    if Path(args.input).is_dir() and not is_zarr(args.input):
        return _predict_folder(args, options)
    if args.scheduler and not is_zarr(args.input):
        raise ValueError("--scheduler runs folders and .zarr inputs on a dask cluster; a "
                         "single image file runs here: leave it out.")
    if getattr(args, "into_input", False) and not is_zarr(args.input):
        raise ValueError("--into-input writes labels inside an OME-Zarr input; the input "
                         f"{args.input!r} is not a .zarr image.")
    if is_zarr(args.input) or is_zarr(args.output):
        return _predict_zarr(args, options)
    check_image_output(Path(args.output))
    spread = _spread_path(args.uncertainty)
    for flag, path in (("--probabilities", args.probabilities), ("--uncertainty", args.uncertainty)):
        if path and image_suffix(path) not in (".tif", ".tiff", *NIFTI_SUFFIXES):
            raise ValueError(f"{flag} must be a .tif file, or NIfTI (.nii, .nii.gz) (the map is float32).")
    check_outputs({"output": args.output, "--probabilities": args.probabilities,
                   "--uncertainty": args.uncertainty, "--uncertainty (spread)": spread},
                  {"input": args.input, "model": args.model}, overwrite=args.overwrite)
    image, meta = read_image_and_meta(args.input)
    model = load_model(args.model)
    axes = input_axes(meta, args.axes, image.shape, model.config.in_channels, args.input)
    options = with_file_spacing(options, meta, axes, args.min_physical_size)
    bar = TileBar()
    probs, labels = probabilities_and_labels(model, image, options, axes=axes,
                                             tile_size=args.tile_size,
                                             batch_size=args.batch_size, callback=bar,
                                             probabilities=bool(args.probabilities),
                                             probabilities_as=args.probabilities_as)
    bar.close()
    outputs = {args.output: labels}
    if args.probabilities:
        outputs[args.probabilities] = probs
    if args.uncertainty:
        outputs.update(_uncertainty_maps(args, model, image, axes, spread))
    # all replaced together, once everything is computed, with the input's axes and sizes
    write_images(outputs, output_metas(meta, axes, outputs))
    count = "classes" if model.config.n_classes > 1 or args.semantic else "objects"
    print(f"wrote {args.output}: shape {labels.shape}, dtype {labels.dtype}, "
          f"{int(labels.max())} {count}")
    if args.uncertainty:
        print(f"wrote {args.uncertainty} (entropy, mean "
              f"{float(outputs[args.uncertainty].mean()):.3f}) and {spread} ({args.passes} "
              "dropout passes)")
    return 0


def _spread_path(uncertainty: str | None) -> str | None:
    """Where ``--uncertainty FILE`` puts the spread map: next to it as FILE's name + _spread."""
    if not uncertainty:
        return None
    path = Path(uncertainty)
    from ..io.images import image_stem, image_suffix

    return str(path.with_name(f"{image_stem(path)}_spread{image_suffix(path)}"))


def _uncertainty_maps(args: argparse.Namespace, model, image, axes: str, spread: str) -> dict:
    """Monte-Carlo dropout maps of ``image``: {--uncertainty: entropy, spread path: spread}."""
    from ..prediction.uncertainty import uncertainty

    bar = TileBar()
    maps = uncertainty(model, image, args.passes, axes=axes, tile_size=args.tile_size,
                       callback=bar)
    bar.close()
    return {args.uncertainty: maps.entropy, spread: maps.spread}


def _predict_folder(args: argparse.Namespace, options) -> int:
    """Every image of the input folder, one model load, a bar over files; skips finished
    outputs unless --overwrite; exit status 2 when some files failed."""
    from ..io.images import IMAGE_SUFFIXES, image_suffix
    from ..prediction.folders import SUMMARY, iter_predict_folder

    out = Path(args.output)
    if (out.exists() and not out.is_dir()) or (not out.exists() and image_suffix(out) in IMAGE_SUFFIXES):
        raise ValueError(f"the input {args.input!r} is a folder, so the output must be a "
                         f"folder too (for <name>.tif files); got the file name {args.output!r}.")
    bar = None
    failed = []
    for result in iter_predict_folder(args.model, args.input, args.output, options,
                                      probabilities_dir=args.probabilities,
                                      overwrite=args.overwrite, axes=args.axes,
                                      tile_size=args.tile_size, batch_size=args.batch_size,
                                      probabilities_as=args.probabilities_as,
                                      min_physical_size=args.min_physical_size,
                                      scheduler=args.scheduler):
        if bar is None:
            bar = progress_bar(result.total, "files", unit="file")
        if result.status == "failed":
            failed.append(result)
            bar.write(f"failed: {result.file}: {result.error}", file=sys.stderr)
        bar.update(1)
    bar.close()
    done = bar.n - len(failed)
    print(f"wrote {args.output}: {done} of {bar.n} files done or already there; "
          f"summary in {Path(args.output) / SUMMARY}")
    if failed:
        print(f"napari-unet: error: {len(failed)} of {bar.n} files failed (listed in "
              f"{SUMMARY}); fix them and run the same command again to do just those.",
              file=sys.stderr)
        return 2
    return 0


def _predict_zarr(args: argparse.Namespace, options) -> int:
    """Larger-than-memory prediction: zarr in, zarr out, computed block by block, in one pass
    (an OME-Zarr input gives OME-Zarr outputs; --into-input puts the labels inside it)."""
    from ..io.outputs import check_outputs

    into = bool(getattr(args, "into_input", False))
    for name, path in (("input", args.input), ("output", None if into else args.output),
                       ("--probabilities", args.probabilities)):
        if path and not is_zarr(path):
            raise ValueError(f"A .zarr input is predicted lazily into .zarr folders; {name} "
                             f"{str(path)!r} must end in .zarr too.")
    if not Path(args.input).is_dir():
        raise ValueError(f"Input {str(args.input)!r} does not exist (or is not a .zarr folder).")
    if into:
        _check_label_name(args)
    check_outputs({"output": None if into else args.output, "--probabilities": args.probabilities},
                  {"input": args.input, "model": args.model}, overwrite=args.overwrite,
                  folders=("output", "--probabilities"))
    return _write_zarr_outputs(args, options, into)


def _check_label_name(args: argparse.Namespace) -> None:
    """With --into-input, OUTPUT names a label image of the OME-Zarr input: refuse a name
    that is a path, an input that is not OME-Zarr, and an existing label unless --overwrite."""
    import os

    from ..io.ngff import is_ngff

    name = args.output
    if not name or name.startswith(".") or any(c in name for c in "/\\") or name == "labels":
        raise ValueError(f"With --into-input, OUTPUT is the name of the label image (e.g. "
                         f"'nuclei'), written as {args.input}/labels/NAME; got {name!r}.")
    if not is_ngff(args.input):
        raise ValueError(f"--into-input needs an OME-Zarr (NGFF) image; {args.input!r} is not "
                         "one. Give an output .zarr path instead.")
    if not os.access(args.input, os.W_OK | os.X_OK):
        raise ValueError(f"{args.input!r} is not writable; give an output .zarr path instead.")
    if (Path(args.input) / "labels" / name).exists() and not args.overwrite:
        raise ValueError(f"{args.input}/labels/{name} already exists; pass --overwrite to "
                         "replace it, or choose another name.")


def _write_zarr_outputs(args: argparse.Namespace, options, into: bool = False) -> int:
    import contextlib

    from ..prediction.to_zarr import predict_zarr

    with contextlib.ExitStack() as stack:
        if args.scheduler:  # the blocks computed on the cluster's workers
            import dask

            from ..prediction.cluster import Cluster

            cluster = stack.enter_context(Cluster(args.scheduler))
            stack.enter_context(dask.config.set(scheduler=cluster.scheduler))
        shape, dtype = predict_zarr(args.model, args.input, None if into else args.output,
                                    options, probabilities_out=args.probabilities,
                                    axes=args.axes, tile_size=args.tile_size,
                                    probabilities_as=args.probabilities_as,
                                    batch_size=args.batch_size,
                                    label_name=args.output if into else None,
                                    min_physical_size=args.min_physical_size)
    where = f"{args.input}/labels/{args.output}" if into else args.output
    print(f"wrote {where}: shape {shape}, dtype {dtype} (zarr, lazy blocks)")
    return 0
