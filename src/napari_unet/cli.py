"""The ``napari-unet`` command: demo, train, predict, evaluate, info.

Run ``napari-unet COMMAND --help`` for the options of each command.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from pathlib import Path


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
    from .demo import DemoSettings, run_demo

    settings = DemoSettings(epochs=args.epochs, steps_per_epoch=args.steps, seed=args.seed)
    if args.quick:
        settings = DemoSettings(n_train=2, image_size=128, test_size=128, epochs=2,
                                steps_per_epoch=3, patch_size=64, batch_size=4,
                                start_neurons=8, depth=2, seed=args.seed)
    print(f"napari-unet demo: training a U-Net on {settings.n_train} synthetic images "
          f"({settings.epochs} epochs x {settings.steps_per_epoch} batches), results in {args.out}",
          file=sys.stderr)
    callback = _train_callback("training")
    metrics = run_demo(args.out, settings, callback)
    callback.close()
    print(json.dumps({k: metrics[k] for k in ("foreground_iou", "object_f1", "train_seconds",
                                               "predict_seconds")}, indent=2))
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
    from .image_files import list_pairs, read_image
    from .model_files import save_model
    from .outputs import check_outputs
    from .training import train

    if Path(args.out).suffix != ".keras":
        raise ValueError(f"--out must end in .keras; got {args.out!r}.")
    check_outputs({"--out": args.out}, {"--config": args.config}, overwrite=args.overwrite)
    pairs = list_pairs(args.images, args.masks)
    names = [p.name for p, _ in pairs]
    images = [read_image(i) for i, _ in pairs]
    masks = [read_image(m) for _, m in pairs]
    config = _read_config(args, images[0], names)
    print(f"training on {len(pairs)} image(s) from {args.images}", file=sys.stderr)
    callback = _train_callback("training")
    with _StopOnInterrupt() as interrupt:
        result = train(images, masks, config, patch_size=args.patch_size,
                       batch_size=args.batch_size, epochs=args.epochs,
                       steps_per_epoch=args.steps, learning_rate=args.lr,
                       validation_fraction=args.validation, loss=args.loss,
                       label_mode=args.label_mode, axes=args.axes, seed=args.seed,
                       callback=callback, verbose=False, should_stop=interrupt, names=names)
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
                        args.link_planes)


def cmd_predict(args: argparse.Namespace) -> int:
    from .image_files import check_image_output, read_image, write_image
    from .model_files import load_model
    from .outputs import check_outputs
    from .prediction import probabilities_and_labels

    options = _label_options(args)
    if _is_zarr(args.input) or _is_zarr(args.output):
        return _predict_zarr(args, options)
    check_image_output(Path(args.output))
    if args.probabilities and Path(args.probabilities).suffix.lower() not in (".tif", ".tiff"):
        raise ValueError("--probabilities must be a .tif file (probabilities are float32).")
    check_outputs({"output": args.output, "--probabilities": args.probabilities},
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
    count = "classes" if model.config.n_classes > 1 or args.semantic else "objects"
    print(f"wrote {args.output}: shape {labels.shape}, dtype {labels.dtype}, "
          f"{int(labels.max())} {count}")
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


def _is_zarr(path: str | None) -> bool:
    return bool(path) and str(path).rstrip("/\\").lower().endswith(".zarr")


def _predict_zarr(args: argparse.Namespace, options) -> int:
    """Larger-than-memory prediction: zarr in, zarr out, computed block by block, in one pass."""
    from .outputs import check_outputs

    for name, path in (("input", args.input), ("output", args.output),
                       ("--probabilities", args.probabilities)):
        if path and not _is_zarr(path):
            raise ValueError(f"A .zarr input is predicted lazily into .zarr folders; {name} "
                             f"{str(path)!r} must end in .zarr too.")
    try:
        import zarr  # noqa: F401
    except ImportError:
        raise ValueError("reading and writing .zarr needs the zarr package: "
                         "pip install zarr") from None
    if not Path(args.input).is_dir():
        raise ValueError(f"Input {str(args.input)!r} does not exist (or is not a .zarr folder).")
    check_outputs({"output": args.output, "--probabilities": args.probabilities},
                  {"input": args.input, "model": args.model}, overwrite=args.overwrite,
                  folders=("output", "--probabilities"))
    return _write_zarr_outputs(args, options)


def _write_zarr_outputs(args: argparse.Namespace, options) -> int:
    import dask
    import dask.array as da
    from dask.diagnostics import ProgressBar

    from .model_files import load_model
    from .outputs import atomic_path
    from .prediction import probabilities_and_labels

    model = load_model(args.model)
    try:
        image = da.from_zarr(args.input)
    except Exception as err:  # noqa: BLE001 - any zarr failure means an unreadable input
        raise ValueError(f"Could not read {str(args.input)!r} as a zarr array: {err}") from err
    probs, labels = probabilities_and_labels(model, image, options, axes=args.axes,
                                             tile_size=args.tile_size, batch_size=args.batch_size)
    targets = [(labels, args.output)] + ([(probs, args.probabilities)] if args.probabilities else [])
    with contextlib.ExitStack() as stack:
        tmps = [stack.enter_context(atomic_path(path)) for _, path in targets]
        stores = [arr.to_zarr(str(tmp), compute=False) for (arr, _), tmp in zip(targets, tmps)]
        with ProgressBar(out=sys.stderr):
            dask.compute(*stores)
    print(f"wrote {args.output}: shape {labels.shape}, dtype {labels.dtype} (zarr, lazy blocks)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .image_files import list_pairs, read_image
    from .model_files import load_model
    from .metrics import foreground_iou, matched_objects
    from .prediction import segment

    model = load_model(args.model)
    rows = []
    for image_path, mask_path in list_pairs(args.images, args.masks):
        try:
            labels = segment(model, read_image(image_path), min_size=args.min_size)
            truth = read_image(mask_path)
            rows.append({"image": image_path.name, "foreground_iou": foreground_iou(labels, truth),
                         **matched_objects(labels, truth)})
        except ValueError as err:
            raise ValueError(f"{image_path.name} / {mask_path.name}: {err}") from err
    mean = sum(r["foreground_iou"] for r in rows) / len(rows)
    print(json.dumps({"images": rows, "mean_foreground_iou": mean}, indent=2))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .config import UNetConfig
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
        "threshold": meta.get("threshold"),
        "class_names": meta.get("class_names"),
        "info": meta.get("info"),
        "epochs": len(meta.get("history", {}).get("loss", [])),
    }
    print(json.dumps(summary, indent=2))
    return 0


def _whole(minimum: int):
    """An argparse type: a whole number >= ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value
    return parse


def _number(low: float, high: float, *, high_open: bool = True, low_open: bool = False):
    """An argparse type: a finite number in the interval ``low``..``high``."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        above = value > low if low_open else value >= low
        below = value < high if high_open else value <= high
        if not (above and below):  # also refuses nan and inf
            interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
            raise argparse.ArgumentTypeError(f"must be in {interval}, got {text}")
        return value
    return parse


class _DefaultsFormatter(argparse.HelpFormatter):
    """Adds "(default: X)" to options that have a real default and do not say it already."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "default" not in text:
            text += f" (default: {action.default})"
        return text


def _subparser(sub, name: str, help_text: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help_text, description=help_text,
                          formatter_class=_DefaultsFormatter)


def _add_train_parser(sub) -> None:
    p = _subparser(sub, "train", "train a U-Net on image/mask files matched by name")
    p.add_argument("--images", required=True, help="folder of .tif/.png images")
    p.add_argument("--masks", required=True, help="folder of label images with the same names")
    p.add_argument("--out", required=True, help="model file to write (.keras)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--config", help="UNetConfig as a JSON file (overrides the options below)")
    p.add_argument("--start-neurons", type=_whole(1), default=16, help="filters of the first level")
    p.add_argument("--depth", type=_whole(1), default=4, help="pooling steps")
    p.add_argument("--classes", type=_whole(1), default=1,
                   help="1 = foreground/background; >= 2 = classes")
    p.add_argument("--batch-norm", action="store_true", help="batch normalisation after each conv")
    p.add_argument("--axes", help="axes of the images, e.g. YX, YXC, ZYX (default: guessed)")
    p.add_argument("--epochs", type=_whole(1), default=20, help="training epochs")
    p.add_argument("--steps", type=_whole(1),
                   help="batches per epoch (default: about two passes over the annotations)")
    p.add_argument("--patch-size", type=_whole(1), default=128, help="training patch side (px)")
    p.add_argument("--batch-size", type=_whole(1), default=8, help="patches per batch")
    p.add_argument("--lr", type=_number(0, 1, low_open=True, high_open=False), default=1e-3,
                   help="Adam learning rate")
    p.add_argument("--validation", type=_number(0, 1), default=0.15, help="fraction held out")
    p.add_argument("--loss", choices=("bce", "bce_dice"), default="bce", help="loss function")
    p.add_argument("--label-mode", choices=("dense", "sparse"), default="dense",
                   help="dense labels, or sparse scribbles (0 = unlabelled, 1 = background)")
    p.add_argument("--seed", type=int, help="random seed for reproducible training")
    p.set_defaults(func=cmd_train)


def _add_predict_parser(sub) -> None:
    p = _subparser(sub, "predict", "segment an image file with a saved model")
    p.add_argument("model", help="a .keras file saved by napari-unet")
    p.add_argument("input", help="image file (.tif or .png), or a .zarr array (predicted lazily)")
    p.add_argument("output", help="label image to write (.tif/.png; .zarr for a .zarr input)")
    p.add_argument("--probabilities", help="also write the probability map here (.tif, or .zarr)")
    p.add_argument("--overwrite", action="store_true", help="replace outputs that exist")
    p.add_argument("--axes", help="axes of the input, e.g. YX, ZYX, TZYX, YXC (default: guessed)")
    p.add_argument("--threshold", type=_number(0, 1, low_open=True),
                   help="foreground threshold in (0, 1) (default: the model's)")
    p.add_argument("--semantic", action="store_true", help="write a 0/1 mask instead of instance ids")
    p.add_argument("--min-size", type=_whole(0), default=0,
                   help="remove objects smaller than this (pixels)")
    p.add_argument("--split-touching", action="store_true", help="watershed to separate touching objects")
    p.add_argument("--link-planes", action="store_true", help="label objects in 3D across Z")
    p.add_argument("--tile-size", type=_whole(1),
                   help="tile side in pixels incl. halo (default: from memory)")
    p.add_argument("--batch-size", type=_whole(1), help="tiles per batch (default: from memory)")
    p.set_defaults(func=cmd_predict)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="napari-unet", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--debug", action="store_true",
                        help="show tracebacks and TensorFlow's own messages")
    sub = parser.add_subparsers(dest="command")

    p = _subparser(sub, "demo", "train on built-in synthetic nuclei and segment a held-out image")
    p.add_argument("--out", default="demo_output", help="output folder (its files are replaced)")
    p.add_argument("--epochs", type=_whole(1), default=12, help="training epochs")
    p.add_argument("--steps", type=_whole(1), default=30, help="batches per epoch")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--quick", action="store_true", help="a tiny network for a few seconds (smoke test)")
    p.add_argument("--gui", action="store_true", help="then open napari with the results and widgets")
    p.set_defaults(func=cmd_demo)

    _add_train_parser(sub)
    _add_predict_parser(sub)

    p = _subparser(sub, "evaluate", "IoU and object F1 of a model on image/mask files")
    p.add_argument("model", help="a .keras file saved by napari-unet")
    p.add_argument("--images", required=True, help="folder of .tif/.png images")
    p.add_argument("--masks", required=True, help="folder of ground-truth labels, same names")
    p.add_argument("--min-size", type=_whole(0), default=0,
                   help="remove objects smaller than this (pixels)")
    p.set_defaults(func=cmd_evaluate)

    p = _subparser(sub, "info", "describe a model file without loading TensorFlow")
    p.add_argument("model", help="a .keras file saved by napari-unet")
    p.set_defaults(func=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if args.debug else "3")
    if args.version:
        from .version import __version__

        print(__version__)
        return 0
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except BaseException as err:  # noqa: BLE001 - every failure ends in one line and a status
        if isinstance(err, SystemExit):
            raise
        status, message = _failure(err)
        if args.debug:
            import traceback

            traceback.print_exc()
        print(f"napari-unet {args.command}: {message}", file=sys.stderr)
        return status


def _failure(err: BaseException) -> tuple[int, str]:
    """Exit status and one-line message for an exception that ended a command."""
    if isinstance(err, KeyboardInterrupt):
        return 130, "interrupted; nothing was written"
    if isinstance(err, MemoryError):
        return 2, f"out of memory: {err or 'use a smaller --tile-size, or a smaller model'}"
    if isinstance(err, (ValueError, OSError)):
        return 2, f"error: {err}"
    return 1, f"internal error ({type(err).__name__}: {err}); run with --debug for details"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
