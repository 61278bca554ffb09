"""What each ``napari-unet`` command does, given its parsed arguments (see `napari_unet.cli`
for the options). Each returns the exit status; expected failures raise ``ValueError``."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from .zarr_files import is_zarr

__all__ = ["cmd_demo", "cmd_train", "cmd_predict", "cmd_evaluate", "cmd_info"]


def _progress_bar(total: int, desc: str, unit: str = "batch"):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)


def _train_callback(bar_desc: str):
    """A training callback drawing a progress bar sized from the first event."""
    bars: list = []

    def on_event(event) -> None:
        if not bars:
            bars.append(_progress_bar(event.epochs * event.batches, bar_desc))
        bar = bars[0]
        if event.phase == "calibrate":
            bar.write("choosing the label settings (calibration)", file=sys.stderr)
            return
        if event.phase == "batch":
            bar.update(1)
            bar.set_postfix(epoch=f"{event.epoch}/{event.epochs}", loss=f"{event.logs['loss']:.3f}")
            return
        values = " ".join(f"{k} {v:.4f}" for k, v in event.logs.items())
        bar.write(f"epoch {event.epoch}/{event.epochs}: {values}", file=sys.stderr)

    on_event.close = lambda: [bar.close() for bar in bars]
    return on_event


class _StopOnInterrupt:
    """While active, a first Ctrl-C asks training to stop after the current batch (so the
    best weights so far are kept and saved); a second one interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __call__(self) -> bool:
        return self.requested

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\ninterrupted: stopping after this batch and saving the best weights so far "
              "(Ctrl-C again to quit without saving)", file=sys.stderr)

    def __enter__(self) -> "_StopOnInterrupt":
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGINT, self._previous)


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import DemoSettings, quick_demo_settings, run_demo

    settings = DemoSettings(epochs=args.epochs, steps_per_epoch=args.steps, seed=args.seed)
    if args.quick:
        settings = quick_demo_settings(args.seed)
    print(f"napari-unet demo: training a U-Net on {settings.n_train} synthetic images "
          f"({settings.epochs} epochs x {settings.steps_per_epoch} batches), results in {args.out}",
          file=sys.stderr)
    callback = _train_callback("training")
    metrics = run_demo(args.out, settings, callback)
    callback.close()
    print(json.dumps({k: metrics[k] for k in ("foreground_iou", "object_f1", "ap@0.5", "ap@0.75",
                                               "train_seconds", "predict_seconds")}, indent=2))
    print(f"foreground IoU on the held-out image: {metrics['foreground_iou']:.3f}")
    print(f"wrote {args.out}/model.keras, labels.tif, overlay.png, metrics.json")
    if args.gui:
        from ._widgets.launch import open_demo_viewer

        open_demo_viewer(Path(args.out))
    return 0


def _read_config(args: argparse.Namespace, first_image, names: list[str]):
    """The `UNetConfig` from ``--config`` or from the architecture options."""
    from .config import UNetConfig
    from .arrays import check_axes

    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise ValueError(f"--config file {str(path)!r} does not exist.")
        try:
            return UNetConfig.from_json(path.read_text())
        except (ValueError, TypeError) as err:
            raise ValueError(f"--config file {str(path)!r}: {err}") from err
    channels = 1
    if args.axes:
        try:
            axes = check_axes(args.axes, first_image.shape)
        except ValueError as err:
            raise ValueError(f"--axes for image {names[0]!r}: {err}") from err
        channels = first_image.shape[axes.index("C")] if "C" in axes else 1
    return UNetConfig(start_neurons=args.start_neurons, depth=args.depth, n_classes=args.classes,
                      in_channels=channels, batch_norm=args.batch_norm)


def cmd_train(args: argparse.Namespace) -> int:
    from .image_files import read_training_folder
    from .model_files import load_model, save_model
    from .outputs import check_outputs
    from .training import train

    if Path(args.out).suffix != ".keras":
        raise ValueError(f"--out must end in .keras; got {args.out!r}.")
    check_outputs({"--out": args.out}, {"--config": args.config, "--model": args.model},
                  overwrite=args.overwrite)
    if args.model and args.config:
        raise ValueError("give either --model (train it further) or --config (a new network).")
    if args.border_sigma is not None and not args.border_weight:
        raise ValueError("--border-sigma sets how far --border-weight reaches: give "
                         "--border-weight too (the U-Net paper uses 10).")
    if args.freeze_encoder and not args.model:
        raise ValueError("--freeze-encoder fine-tunes a trained model: give it with --model.")
    images, masks, names = read_training_folder(args.images, args.masks)
    config = _read_config(args, images[0], names) if not args.model else load_model(args.model)
    print(f"training on {len(images)} image(s) from {args.images}", file=sys.stderr)
    callback = _train_callback("training")
    with _StopOnInterrupt() as interrupt:
        result = train(images, masks, config, patch_size=args.patch_size,
                       batch_size=args.batch_size, epochs=args.epochs,
                       time_budget=args.time_budget,
                       steps_per_epoch=args.steps, learning_rate=args.lr,
                       validation_fraction=args.validation, loss=args.loss,
                       label_mode=args.label_mode, axes=args.axes, seed=args.seed,
                       target=args.target, boundary_width=args.boundary_width,
                       border_weight=args.border_weight,
                       border_sigma=5.0 if args.border_sigma is None else args.border_sigma,
                       freeze_encoder=args.freeze_encoder, callback=callback, verbose=False,
                       should_stop=interrupt, names=names)
    callback.close()
    save_model(result.model, args.out)
    info = result.model.info
    if info.get("diverged"):
        print(f"warning: training stopped because {info['diverged']}", file=sys.stderr)
    if interrupt.requested:
        print(f"interrupted: saved the best weights so far (epoch {info['best_epoch']} of "
              f"{info['epochs_run']}) to {args.out}", file=sys.stderr)
        return 130
    print(f"saved {args.out} (best epoch {info['best_epoch']})")
    return 0


def _label_options(args: argparse.Namespace):
    from .postprocess import LabelOptions

    return LabelOptions(args.threshold, not args.semantic, args.min_size, args.split_touching,
                        args.link_planes, args.seed_threshold)


def cmd_predict(args: argparse.Namespace) -> int:
    from .image_files import check_image_output, read_image, write_image
    from .model_files import load_model
    from .outputs import check_outputs
    from .prediction import probabilities_and_labels

    options = _label_options(args)
    if args.uncertainty and (Path(args.input).is_dir() or is_zarr(args.input)):
        raise ValueError("--uncertainty works on single image files; for folders run them one "
                         "by one, for .zarr arrays use napari_unet.uncertainty (lazy) in Python.")
    if Path(args.input).is_dir() and not is_zarr(args.input):
        return _predict_folder(args, options)
    if is_zarr(args.input) or is_zarr(args.output):
        return _predict_zarr(args, options)
    check_image_output(Path(args.output))
    spread = _spread_path(args.uncertainty)
    for flag, path in (("--probabilities", args.probabilities), ("--uncertainty", args.uncertainty)):
        if path and Path(path).suffix.lower() not in (".tif", ".tiff"):
            raise ValueError(f"{flag} must be a .tif file (the map is float32).")
    check_outputs({"output": args.output, "--probabilities": args.probabilities,
                   "--uncertainty": args.uncertainty, "--uncertainty (spread)": spread},
                  {"input": args.input, "model": args.model}, overwrite=args.overwrite)
    image = read_image(args.input)
    model = load_model(args.model)
    bar = _TileBar()
    probs, labels = probabilities_and_labels(model, image, options, axes=args.axes,
                                             tile_size=args.tile_size,
                                             batch_size=args.batch_size, callback=bar)
    bar.close()
    write_image(args.output, labels)
    if args.probabilities:
        write_image(args.probabilities, probs.astype("float32"))
    if args.uncertainty:
        _write_uncertainty(args, model, image, spread)
    count = "classes" if model.config.n_classes > 1 or args.semantic else "objects"
    print(f"wrote {args.output}: shape {labels.shape}, dtype {labels.dtype}, "
          f"{int(labels.max())} {count}")
    return 0


def _spread_path(uncertainty: str | None) -> str | None:
    """Where ``--uncertainty FILE`` puts the spread map: next to it as FILE's name + _spread."""
    if not uncertainty:
        return None
    path = Path(uncertainty)
    return str(path.with_name(f"{path.stem}_spread{path.suffix}"))


def _write_uncertainty(args: argparse.Namespace, model, image, spread: str | None) -> None:
    """Monte-Carlo dropout maps of ``image``: entropy to --uncertainty, spread beside it."""
    from .image_files import write_image
    from .uncertainty import uncertainty

    bar = _TileBar()
    maps = uncertainty(model, image, args.passes, axes=args.axes, tile_size=args.tile_size,
                       callback=bar)
    bar.close()
    write_image(args.uncertainty, maps.entropy)
    write_image(spread, maps.spread)
    print(f"wrote {args.uncertainty} (entropy, mean {float(maps.entropy.mean()):.3f}) and "
          f"{spread} ({args.passes} dropout passes)")


def _predict_folder(args: argparse.Namespace, options) -> int:
    """Every image of the input folder, one model load, a bar over files; skips finished
    outputs unless --overwrite; exit status 2 when some files failed."""
    from .folders import SUMMARY, iter_predict_folder

    from .image_files import IMAGE_SUFFIXES

    out = Path(args.output)
    if (out.exists() and not out.is_dir()) or (not out.exists() and out.suffix.lower() in IMAGE_SUFFIXES):
        raise ValueError(f"the input {args.input!r} is a folder, so the output must be a "
                         f"folder too (for <name>.tif files); got the file name {args.output!r}.")
    bar = None
    failed = []
    for result in iter_predict_folder(args.model, args.input, args.output, options,
                                      probabilities_dir=args.probabilities,
                                      overwrite=args.overwrite, axes=args.axes,
                                      tile_size=args.tile_size, batch_size=args.batch_size):
        if bar is None:
            bar = _progress_bar(result.total, "files", unit="file")
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


class _TileBar:
    """A prediction callback: a tile progress bar, with the engine's messages printed above it."""

    def __init__(self) -> None:
        self.bar = None

    def __call__(self, event) -> None:
        if self.bar is None:
            self.bar = _progress_bar(event.total, "predicting", unit="tile")
        if event.message:
            self.bar.write(f"note: {event.message}", file=sys.stderr)
        self.bar.total = event.total
        self.bar.n = event.done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _predict_zarr(args: argparse.Namespace, options) -> int:
    """Larger-than-memory prediction: zarr in, zarr out, computed block by block, in one pass."""
    from .outputs import check_outputs

    for name, path in (("input", args.input), ("output", args.output),
                       ("--probabilities", args.probabilities)):
        if path and not is_zarr(path):
            raise ValueError(f"A .zarr input is predicted lazily into .zarr folders; {name} "
                             f"{str(path)!r} must end in .zarr too.")
    if not Path(args.input).is_dir():
        raise ValueError(f"Input {str(args.input)!r} does not exist (or is not a .zarr folder).")
    check_outputs({"output": args.output, "--probabilities": args.probabilities},
                  {"input": args.input, "model": args.model}, overwrite=args.overwrite,
                  folders=("output", "--probabilities"))
    return _write_zarr_outputs(args, options)


def _write_zarr_outputs(args: argparse.Namespace, options) -> int:
    from .zarr_files import predict_zarr

    shape, dtype = predict_zarr(args.model, args.input, args.output, options,
                                probabilities_out=args.probabilities, axes=args.axes,
                                tile_size=args.tile_size, batch_size=args.batch_size)
    print(f"wrote {args.output}: shape {shape}, dtype {dtype} (zarr, lazy blocks)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .image_files import list_pairs, read_image
    from .model_files import load_model
    import numpy as np

    from .metrics import evaluate, evaluate_classes
    from .postprocess import LabelOptions
    from .prediction import probabilities_and_labels

    model = load_model(args.model)
    rows = []
    for image_path, mask_path in list_pairs(args.images, args.masks):
        try:
            image, truth = read_image(image_path), read_image(mask_path)
            probs, labels = probabilities_and_labels(model, image, LabelOptions(
                min_size=args.min_size))
            row = {"image": image_path.name, **evaluate(labels, truth)}
            if model.target == "classes":  # and per class, on the class map
                row.update(evaluate_classes(_class_map(model, image, probs, args.min_size),
                                            truth, model.class_names))
            rows.append(row)
        except ValueError as err:
            raise ValueError(f"{image_path.name} / {mask_path.name}: {err}") from err
    keys = [k for k in dict.fromkeys(k for r in rows for k in r) if k != "image"]
    means = {f"mean_{k}": float(np.mean([r[k] for r in rows if k in r])) for k in keys}
    print(json.dumps({"images": rows, **means}, indent=2))
    return 0


def _class_map(model, image, probs, min_size: int | None):
    """The class map (argmax, small objects removed) of a multi-class model's ``probs``."""
    from .arrays import resolve_axes
    from .postprocess import LabelOptions, labels_from_probabilities

    axes = resolve_axes(None, image.shape, model.config.in_channels).replace("C", "")
    options = LabelOptions(instances=False, min_size=min_size).for_unet(model)
    return labels_from_probabilities(probs, axes, options, "classes")


def _environment() -> dict:
    """Where networks run in this process: versions, backend, device in plain words,
    the precision ``"auto"`` picks, accelerator memory and data-parallel devices."""
    from .inference import prediction_memory_budget
    from .keras_backend import (accelerator_memory, backend_name, data_parallel,
                                describe_device, load_keras, resolve_precision)
    from .version import __version__

    keras = load_keras()
    free = accelerator_memory()
    parallel = data_parallel(None)
    return {
        "napari_unet_version": __version__,
        "keras_version": keras.__version__,
        "backend": backend_name(),
        "device": describe_device(),
        "precision_auto": resolve_precision("auto"),
        "accelerator_free_gib": None if free is None else round(free / 2**30, 1),
        "prediction_memory_budget_gib": round(prediction_memory_budget() / 2**30, 2),
        "data_parallel_devices": parallel.devices if parallel else 1,
    }


def cmd_info(args: argparse.Namespace) -> int:
    from .config import UNetConfig

    if args.model is None:
        print(json.dumps(_environment(), indent=2, ensure_ascii=False))
        return 0
    from .model_files import read_metadata
    from .costs import count_parameters, flops_per_megapixel, halo, receptive_field

    meta = read_metadata(args.model)
    config = UNetConfig.from_dict(meta["config"])
    summary = {
        "config": meta["config"],
        "parameters": count_parameters(config),
        "gflop_per_megapixel": round(flops_per_megapixel(config) / 1e9, 1),
        "receptive_field_px": receptive_field(config),
        "halo_px": halo(config),
        "normalization": meta.get("normalization"),
        "target": meta.get("target") or ("foreground" if config.n_classes == 1 else "classes"),
        "threshold": meta.get("threshold"),
        "seed_threshold": meta.get("seed_threshold", 0.5),
        "min_size": meta.get("min_size", 0),
        "split_distance": meta.get("split_distance", 0),
        "linked_decoding": meta.get("linked_decoding", {}),
        "class_names": meta.get("class_names"),
        "info": meta.get("info"),
        "epochs": len(meta.get("history", {}).get("loss", [])),
    }
    print(json.dumps(summary, indent=2))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .bioimageio_export import export_bioimageio
    from .image_files import read_image
    from .outputs import check_outputs

    check_outputs({"output": args.output}, {"model": args.model, "--test-image": args.test_image},
                  overwrite=args.overwrite)
    test_image = read_image(args.test_image) if args.test_image else None
    path = export_bioimageio(args.model, args.output, name=args.name, authors=args.author,
                             license=args.license, test_image=test_image,
                             overwrite=args.overwrite)
    print(f"wrote {path}: a bioimage.io model package (format 0.5, Keras 3 weights)")
    return 0
