"""What the ``napari-unet`` commands demo, train, evaluate, info and export do, given
their parsed arguments (see `napari_unet.cli.parser` for the options; predict is in
`napari_unet.cli.predict`). Each returns the exit status; expected failures raise
``ValueError``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .progress import StopOnInterrupt, train_callback

__all__ = ["cmd_demo", "cmd_train", "cmd_evaluate", "cmd_info", "cmd_export"]


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import DemoSettings, quick_demo_settings, run_demo

    settings = DemoSettings(epochs=args.epochs, steps_per_epoch=args.steps, seed=args.seed)
    if args.quick:
        settings = quick_demo_settings(args.seed)
    print(f"napari-unet demo: training a U-Net on {settings.n_train} synthetic images "
          f"({settings.epochs} epochs x {settings.steps_per_epoch} batches), results in {args.out}",
          file=sys.stderr)
    callback = train_callback("training")
    metrics = run_demo(args.out, settings, callback)
    callback.close()
    print(json.dumps({k: metrics[k] for k in ("foreground_iou", "object_f1", "ap@0.5", "ap@0.75",
                                               "train_seconds", "predict_seconds")}, indent=2))
    print(f"foreground IoU on the held-out image: {metrics['foreground_iou']:.3f}")
    print(f"wrote {args.out}/model.keras, labels.tif, overlay.png, metrics.json")
    if args.gui:
        from .._widgets.launch import open_demo_viewer

        open_demo_viewer(Path(args.out))
    return 0


def _train_settings(args: argparse.Namespace) -> Any:
    """The `TrainSettings` of the command's options (checked here, before any file is read)."""
    from ..training.settings import TrainSettings

    return TrainSettings(patch_size=args.patch_size, batch_size=args.batch_size,
                         epochs=args.epochs, time_budget=args.time_budget,
                         steps_per_epoch=args.steps, learning_rate=args.lr,
                         validation_fraction=args.validation, loss=args.loss,
                         label_mode=args.label_mode, seed=args.seed, target=args.target,
                         boundary_width=args.boundary_width, border_weight=args.border_weight,
                         border_sigma=5.0 if args.border_sigma is None else args.border_sigma,
                         freeze_encoder=args.freeze_encoder)


def _read_config(args: argparse.Namespace, first_image, names: list[str]):
    """The `UNetConfig` from ``--config`` or from the architecture options."""
    from ..common.arrays import check_axes
    from ..model.config import UNetConfig

    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise ValueError(f"--config file {str(path)!r} does not exist.")
        try:
            return UNetConfig.from_json(path.read_text())
        except (ValueError, TypeError) as err:
            raise ValueError(f"--config file {str(path)!r}: {err}") from err
    channels = 1
    given = args.axes or getattr(first_image, "axes", None)  # --axes, else the file's own
    if given:
        try:
            axes = check_axes(given, first_image.shape)
        except ValueError as err:
            what = "--axes" if args.axes else "the axes its file gives"
            raise ValueError(f"{what} for image {names[0]!r}: {err}") from err
        channels = first_image.shape[axes.index("C")] if "C" in axes else 1
    knobs = dict(start_neurons=args.start_neurons, depth=args.depth, n_classes=args.classes,
                 in_channels=channels, batch_norm=args.batch_norm)
    if not args.volumes:
        if args.z_ratio is not None:
            raise ValueError("--z-ratio sets the voxel shape of a 3D network: give --3d too.")
        return UNetConfig(**knobs)
    sizes = getattr(first_image, "spacing", None) or {}
    ratio = args.z_ratio or (sizes.get("Z", 1.0) / min(sizes.get("Y", 1.0), sizes.get("X", 1.0)))
    return UNetConfig.for_spacing((max(1.0, ratio), 1.0, 1.0), **knobs)


def cmd_train(args: argparse.Namespace) -> int:
    from ..io.images import read_training_folder
    from ..io.outputs import check_outputs
    from ..model.files import load_model, save_model
    from ..training.job import train

    if Path(args.out).suffix != ".keras":
        raise ValueError(f"--out must end in .keras; got {args.out!r}.")
    check_outputs({"--out": args.out}, {"--config": args.config, "--model": args.model},
                  overwrite=args.overwrite)
    if args.model and args.config:
        raise ValueError("give either --model (train it further) or --config (a new network).")
    if args.model and (args.volumes or args.z_ratio is not None):
        raise ValueError("--3d and --z-ratio describe a new network; --model trains an "
                         "existing one further (its network stays as it is).")
    if args.border_sigma is not None and args.border_weight == 0:
        raise ValueError("--border-sigma sets how far the border weight reaches, but "
                         "--border-weight 0 turns it off: leave one of them out.")
    if args.freeze_encoder and not args.model:
        raise ValueError("--freeze-encoder fine-tunes a trained model: give it with --model.")
    settings = _train_settings(args)
    images, masks, names = read_training_folder(args.images, args.masks)
    config = _read_config(args, images[0], names) if not args.model else load_model(args.model)
    settings.check_memory(getattr(config, "config", config))  # before a word is printed
    print(f"training on {len(images)} image(s) from {args.images}", file=sys.stderr)
    callback = train_callback("training")
    with StopOnInterrupt() as interrupt:
        result = train(images, masks, config, settings=settings,
                       axes=args.axes or [image.axes for image in images],
                       callback=callback, verbose=False, should_stop=interrupt, names=names,
                       spacing=[image.spacing for image in images])
    callback.close()
    save_model(result.model, args.out)
    info = result.model.info
    if info.get("diverged"):
        print(f"warning: training stopped because {info['diverged']}", file=sys.stderr)
    if result.model.summary.warning:
        print(f"warning: {result.model.summary.warning}", file=sys.stderr)
    if interrupt.requested:
        print(f"interrupted: saved the best weights so far (epoch {info['best_epoch']} of "
              f"{info['epochs_run']}) to {args.out}", file=sys.stderr)
        return 130
    print(f"saved {args.out} (best epoch {info['best_epoch']})")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import numpy as np

    from ..io.images import list_pairs, read_image, read_image_and_meta
    from ..io.metadata import input_axes
    from ..labels.metrics import evaluate, evaluate_classes
    from ..labels.options import LabelOptions
    from ..model.files import load_model
    from ..prediction.api import probabilities_and_labels
    from ..prediction.spacing import with_file_spacing

    model = load_model(args.model)
    rows = []
    for image_path, mask_path in list_pairs(args.images, args.masks):
        try:
            (image, meta), truth = read_image_and_meta(image_path), read_image(mask_path)
            axes = input_axes(meta, None, image.shape, model.config.in_channels)
            options = with_file_spacing(LabelOptions(min_size=args.min_size), meta, axes, None)
            probs, labels = probabilities_and_labels(model, image, options, axes=axes)
            row = {"image": image_path.name, **evaluate(labels, truth)}
            if model.target == "classes":  # and per class, on the class map
                row.update(evaluate_classes(_class_map(model, axes, probs, args.min_size),
                                            truth, model.class_names))
            rows.append(row)
        except ValueError as err:
            raise ValueError(f"{image_path.name} / {mask_path.name}: {err}") from err
    keys = [k for k in dict.fromkeys(k for r in rows for k in r) if k != "image"]
    means = {f"mean_{k}": float(np.mean([r[k] for r in rows if k in r])) for k in keys}
    print(json.dumps({"images": rows, **means}, indent=2))
    return 0


def _class_map(model, axes: str, probs, min_size: int | None):
    """The class map (argmax, small objects removed) of a multi-class model's ``probs`` of
    an image with ``axes``."""
    from ..labels.decode import labels_from_probabilities
    from ..labels.options import LabelOptions

    axes = axes.replace("C", "")
    options = LabelOptions(instances=False, min_size=min_size).for_unet(model)
    return labels_from_probabilities(probs, axes, options, "classes")


def _environment() -> dict:
    """Where networks run in this process: versions, backend, device in plain words,
    the precision ``"auto"`` picks, accelerator memory and data-parallel devices."""
    from ..backend.devices import accelerator_memory, describe_device, resolve_precision
    from ..backend.parallel import data_parallel
    from ..backend.runtime import backend_name, load_keras
    from ..prediction.tiling import prediction_memory_budget
    from ..version import __version__

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
    """A model file's summary (its metadata, size and cost, and the training report the
    Train widget shows), read without TensorFlow; without a model, where networks run."""
    if args.model is None:
        print(json.dumps(_environment(), indent=2, ensure_ascii=False))
        return 0
    from ..model.costs import (
        count_parameters,
        flops_per_megapixel,
        halo,
        receptive_field,
    )
    from ..model.files import read_summary

    summary = read_summary(args.model)
    meta, config = summary.metadata(), summary.config
    print(json.dumps({
        "report": summary.report(),
        **{k: meta[k] for k in ("config", "normalization", "target", "threshold",
                                "seed_threshold", "min_size", "split_distance", "split_ratio",
                                "linked_decoding", "class_names")},
        "parameters": count_parameters(config),
        "gflop_per_megapixel": round(flops_per_megapixel(config) / 1e9, 1),
        "receptive_field_px": receptive_field(config),
        "halo_px": halo(config),
        "epochs": summary.epochs,
        "info": summary.info,
    }, indent=2, default=str))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..bioimageio.export import export_bioimageio
    from ..io.images import read_image
    from ..io.outputs import check_outputs

    check_outputs({"output": args.output}, {"model": args.model, "--test-image": args.test_image},
                  overwrite=args.overwrite)
    test_image = read_image(args.test_image) if args.test_image else None
    path = export_bioimageio(args.model, args.output, name=args.name, authors=args.author,
                             license=args.license, test_image=test_image,
                             overwrite=args.overwrite)
    print(f"wrote {path}: a bioimage.io model package (format 0.5, Keras 3 weights)")
    return 0
