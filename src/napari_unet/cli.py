"""The ``napari-unet`` command: demo, train, predict, evaluate, info.

Run ``napari-unet COMMAND --help`` for the options of each command.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _progress_bar(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="batch", file=sys.stderr, dynamic_ncols=True)


def _train_callback(bar_desc: str, epochs: int, steps: int):
    bar = _progress_bar(epochs * steps, bar_desc)

    def on_event(event) -> None:
        if event.phase == "batch":
            bar.update(1)
            bar.set_postfix(epoch=f"{event.epoch}/{event.epochs}", loss=f"{event.logs['loss']:.3f}")
        else:
            val = event.logs.get("val_loss")
            bar.write(
                f"epoch {event.epoch}/{event.epochs}: loss {event.logs['loss']:.4f} "
                f"iou {event.logs['iou']:.3f}"
                + (f" val_loss {val:.4f} val_iou {event.logs['val_iou']:.3f}" if val is not None else "")
            )
            if event.epoch == event.epochs:
                bar.close()

    return on_event


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import DemoSettings, run_demo

    settings = DemoSettings(epochs=args.epochs, steps_per_epoch=args.steps, seed=args.seed)
    if args.quick:
        settings = DemoSettings(n_train=2, image_size=128, test_size=128, epochs=2,
                                steps_per_epoch=3, patch_size=64, batch_size=4,
                                start_neurons=8, depth=2, seed=args.seed)
    print(f"napari-unet demo: training a U-Net on {settings.n_train} synthetic images "
          f"({settings.epochs} epochs x {settings.steps_per_epoch} batches), results in {args.out}",
          file=sys.stderr)
    metrics = run_demo(args.out, settings,
                       _train_callback("training", settings.epochs, settings.steps_per_epoch))
    print(json.dumps({k: metrics[k] for k in ("foreground_iou", "object_f1", "train_seconds",
                                               "predict_seconds")}, indent=2))
    print(f"foreground IoU on the held-out image: {metrics['foreground_iou']:.3f}")
    print(f"wrote {args.out}/model.keras, labels.tif, overlay.png, metrics.json")
    if args.gui:
        from ._widgets.launch import open_demo_viewer

        open_demo_viewer(Path(args.out))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .config import UNetConfig
    from .imageio_utils import list_pairs, read_image
    from .io import save_model
    from .training import train

    if not str(args.out).endswith(".keras"):
        raise ValueError(f"--out must end in .keras; got {args.out!r}.")
    pairs = list_pairs(args.images, args.masks)
    images = [read_image(i) for i, _ in pairs]
    masks = [read_image(m) for _, m in pairs]
    if args.config:
        config = UNetConfig.from_json(Path(args.config).read_text())
    else:
        channels = 1 if args.axes is None or "C" not in args.axes else images[0].shape[args.axes.index("C")]
        config = UNetConfig(start_neurons=args.start_neurons, depth=args.depth,
                            n_classes=args.classes, in_channels=channels,
                            batch_norm=args.batch_norm)
    print(f"training on {len(pairs)} image(s) from {args.images}", file=sys.stderr)
    steps = args.steps
    if steps is None:
        import math

        px = sum(m.size for m in masks)
        steps = max(10, math.ceil(2 * px / (args.patch_size**2 * args.batch_size)))
    result = train(images, masks, config, patch_size=args.patch_size, batch_size=args.batch_size,
                   epochs=args.epochs, steps_per_epoch=steps, learning_rate=args.lr,
                   validation_fraction=args.validation, loss=args.loss,
                   label_mode=args.label_mode, axes=args.axes, seed=args.seed,
                   callback=_train_callback("training", args.epochs, steps))
    save_model(result.model, args.out)
    print(f"saved {args.out} (best epoch {result.model.info['best_epoch']})")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .imageio_utils import read_image, write_image
    from .io import load_model
    from .prediction import iter_predict
    from . import data as D
    from .postprocess import labels_from_probabilities
    from .progress import drain

    model = load_model(args.model)
    if str(args.input).rstrip("/").endswith(".zarr"):
        return _predict_zarr(model, args)
    image = read_image(args.input)
    axes = D.resolve_axes(args.axes, image.shape, model.config.in_channels)
    bars = []

    def on_event(event) -> None:
        if not bars:
            bars.append(_progress_bar(event.total, "predicting"))
            bars[0].unit = "tile"
        if event.message:
            bars[0].write(event.message)
        bars[0].n = event.done
        bars[0].refresh()

    probs = drain(iter_predict(model, image, axes=axes, tile_size=args.tile_size,
                               batch_size=args.batch_size), on_event)
    for bar in bars:
        bar.close()
    threshold = model.threshold if args.threshold is None else args.threshold
    labels = labels_from_probabilities(
        probs, axes.replace("C", ""), n_classes=model.config.n_classes, threshold=threshold,
        instances=not args.semantic, min_size=args.min_size, split_touching=args.split_touching,
        link_planes=args.link_planes)
    write_image(args.output, labels)
    if args.probabilities:
        write_image(args.probabilities, probs.astype("float32"))
    print(f"wrote {args.output}: shape {labels.shape}, dtype {labels.dtype}, "
          f"{int(labels.max())} {'classes' if model.config.n_classes > 1 or args.semantic else 'objects'}")
    return 0


def _predict_zarr(model, args: argparse.Namespace) -> int:
    """Larger-than-memory prediction: zarr in, zarr out, computed block by block."""
    import dask.array as da
    from dask.diagnostics import ProgressBar

    from .prediction import predict, segment

    if not str(args.output).rstrip("/").endswith(".zarr"):
        raise ValueError("A .zarr input is predicted lazily; give a .zarr output too.")
    if not Path(args.input).exists():
        raise ValueError(f"Input {args.input!r} does not exist.")
    image = da.from_zarr(args.input)
    threshold = model.threshold if args.threshold is None else args.threshold
    labels = segment(model, image, axes=args.axes, threshold=threshold,
                     instances=not args.semantic, min_size=args.min_size,
                     split_touching=args.split_touching, link_planes=args.link_planes,
                     tile_size=args.tile_size, batch_size=args.batch_size)
    with ProgressBar(out=sys.stderr):
        labels.to_zarr(args.output, overwrite=True)
        if args.probabilities:
            predict(model, image, axes=args.axes, tile_size=args.tile_size).to_zarr(
                args.probabilities, overwrite=True)
    print(f"wrote {args.output}: shape {labels.shape}, dtype {labels.dtype} (zarr, lazy blocks)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .imageio_utils import list_pairs, read_image
    from .io import load_model
    from .metrics import foreground_iou, matched_objects
    from .prediction import segment

    model = load_model(args.model)
    rows = []
    for image_path, mask_path in list_pairs(args.images, args.masks):
        labels = segment(model, read_image(image_path), min_size=args.min_size)
        truth = read_image(mask_path)
        rows.append({"image": image_path.name, "foreground_iou": foreground_iou(labels, truth),
                     **matched_objects(labels, truth)})
    mean = sum(r["foreground_iou"] for r in rows) / len(rows)
    print(json.dumps({"images": rows, "mean_foreground_iou": mean}, indent=2))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .config import UNetConfig
    from .io import read_metadata
    from .model import count_parameters, flops_per_megapixel, halo, receptive_field

    meta = read_metadata(args.model)
    config = UNetConfig.from_dict(meta["config"])
    summary = {
        "config": meta["config"],
        "parameters": count_parameters(config),
        "gflop_per_megapixel": round(flops_per_megapixel(config) / 1e9, 1),
        "receptive_field_px": receptive_field(config),
        "halo_px": halo(config),
        "normalization": meta.get("normalization"),
        "threshold": meta.get("threshold"),
        "class_names": meta.get("class_names"),
        "info": meta.get("info"),
        "epochs": len(meta.get("history", {}).get("loss", [])),
    }
    print(json.dumps(summary, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="napari-unet", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("demo", help="train on built-in synthetic nuclei and segment a held-out image")
    p.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    p.add_argument("--epochs", type=int, default=12, help="training epochs (default 12)")
    p.add_argument("--steps", type=int, default=30, help="batches per epoch (default 30)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--quick", action="store_true", help="a tiny network for a few seconds (smoke test)")
    p.add_argument("--gui", action="store_true", help="then open napari with the results and widgets")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="train a U-Net on image/mask files matched by name")
    p.add_argument("--images", required=True, help="folder of .tif/.png images")
    p.add_argument("--masks", required=True, help="folder of label images with the same names")
    p.add_argument("--out", required=True, help="model file to write (.keras)")
    p.add_argument("--config", help="UNetConfig as a JSON file (overrides the options below)")
    p.add_argument("--start-neurons", type=int, default=16)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--classes", type=int, default=1, help="1 = foreground/background; >= 2 = classes")
    p.add_argument("--batch-norm", action="store_true")
    p.add_argument("--axes", help="axes of the images, e.g. YX, YXC, ZYX (default: guessed)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--steps", type=int, help="batches per epoch (default: about two passes)")
    p.add_argument("--patch-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--validation", type=float, default=0.15, help="fraction held out")
    p.add_argument("--loss", choices=("bce", "bce_dice"), default="bce")
    p.add_argument("--label-mode", choices=("dense", "sparse"), default="dense")
    p.add_argument("--seed", type=int)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="segment an image file with a saved model")
    p.add_argument("model", help="a .keras file saved by napari-unet")
    p.add_argument("input", help="image file (.tif or .png), or a .zarr array (predicted lazily)")
    p.add_argument("output", help="label image to write (.tif; .zarr for a .zarr input)")
    p.add_argument("--probabilities", help="also write the probability map here (.tif)")
    p.add_argument("--axes", help="axes of the input, e.g. YX, ZYX, TZYX, YXC (default: guessed)")
    p.add_argument("--threshold", type=float, help="foreground threshold (default: the model's)")
    p.add_argument("--semantic", action="store_true", help="write a 0/1 mask instead of instance ids")
    p.add_argument("--min-size", type=int, default=0, help="remove objects smaller than this (pixels)")
    p.add_argument("--split-touching", action="store_true", help="watershed to separate touching objects")
    p.add_argument("--link-planes", action="store_true", help="label objects in 3D across Z")
    p.add_argument("--tile-size", type=int, help="tile side in pixels incl. halo (default: from memory)")
    p.add_argument("--batch-size", type=int, help="tiles per batch (default: from memory)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="IoU and object F1 of a model on image/mask files")
    p.add_argument("model")
    p.add_argument("--images", required=True)
    p.add_argument("--masks", required=True)
    p.add_argument("--min-size", type=int, default=0)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("info", help="describe a model file without loading TensorFlow")
    p.add_argument("model")
    p.set_defaults(func=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__

        print(__version__)
        return 0
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except ValueError as err:
        print(f"napari-unet {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
