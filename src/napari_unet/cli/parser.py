"""The ``napari-unet`` command's options: one sub-parser per command, each option's type
checking its range so that a bad value is refused before any work."""

from __future__ import annotations

import argparse

from .commands import cmd_demo, cmd_evaluate, cmd_export, cmd_info, cmd_train
from .predict import cmd_predict

__all__ = ["build_parser"]


class _Parser(argparse.ArgumentParser):
    """An argument parser whose refusals are one line (the usage is for ``--help``)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _whole(minimum: int, maximum: int | None = None):
    """An argparse type: a whole number >= ``minimum`` (and <= ``maximum``)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            allowed = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {value}")
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
    p.add_argument("--images", required=True, help="folder of images (.tif, .png, .nii, .nii.gz, .zarr)")
    p.add_argument("--masks", required=True, help="folder of label images with the same names")
    p.add_argument("--out", required=True, help="model file to write (.keras)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--config", help="UNetConfig as a JSON file (overrides the options below)")
    p.add_argument("--start-neurons", type=_whole(1), default=16, help="filters of the first level")
    p.add_argument("--depth", type=_whole(1), default=4, help="pooling steps")
    p.add_argument("--classes", type=_whole(1), default=1,
                   help="1 = foreground/background; >= 2 = classes")
    p.add_argument("--batch-norm", action="store_true", help="batch normalisation after each conv")
    p.add_argument("--3d", dest="volumes", action="store_true",
                   help="a 3D network for stacks (ZYX): Conv3D layers, trained on 3D patches; "
                        "Z is left alone on the levels where it is coarser than twice the pixel "
                        "size (from the first image's file, or --z-ratio)")
    p.add_argument("--z-ratio", type=_number(1, 1000, low_open=False, high_open=False),
                   help="with --3d: the Z step over the pixel size (default: the file's own, else 1)")
    p.add_argument("--axes", help="axes of the images, e.g. YX, YXC, ZYX (default: guessed)")
    p.add_argument("--epochs", type=_whole(1),
                   help="training epochs (default: sized from the annotated pixels, 5-100; "
                        "with --time-budget, until the budget or early stopping ends it)")
    p.add_argument("--steps", type=_whole(1),
                   help="batches per epoch (default: about two passes over the annotations)")
    p.add_argument("--time-budget", type=_number(0, 1e9, low_open=True, high_open=False),
                   help="end training after this many seconds, keeping the best epoch")
    p.add_argument("--patch-size", type=_whole(1), default=128, help="training patch side (px)")
    p.add_argument("--batch-size", type=_whole(1), default=8, help="patches per batch")
    p.add_argument("--lr", type=_number(0, 1, low_open=True, high_open=False), default=1e-3,
                   help="Adam learning rate")
    p.add_argument("--validation", type=_number(0, 1), default=0.15, help="fraction held out")
    p.add_argument("--loss", choices=("bce", "bce_dice"), default="bce", help="loss function")
    p.add_argument("--label-mode", choices=("dense", "sparse"), default="dense",
                   help="dense labels, or sparse scribbles (0 = unlabelled, 1 = background)")
    p.add_argument("--target", choices=("auto", "foreground", "classes", "boundary"),
                   default="auto", help="what the network learns: boundary (background/interior/"
                   "boundary, for touching objects; auto picks it for instance masks), "
                   "foreground, or classes")
    p.add_argument("--boundary-width", type=_whole(1), default=2,
                   help="width in px of the boundary band (1-3) for --target boundary")
    p.add_argument("--border-weight", type=_number(0, 100, high_open=False), default=None,
                   help="the U-Net paper's extra loss weight w0 where objects come close "
                   "(0 = off; default: the paper's 10 for instance masks of a boundary "
                   "network, else off)")
    p.add_argument("--border-sigma", type=_number(0, 100, low_open=True, high_open=False),
                   default=None, help="how far in px that weight reaches (default: the paper's "
                   "sigma, 5)")
    p.add_argument("--seed", type=int, help="random seed for reproducible training")
    p.add_argument("--model", help="a .keras model to train on (fine-tune) instead of a new "
                   "network; its architecture and target are kept")
    p.add_argument("--freeze-encoder", action="store_true",
                   help="with --model: train only the decoder (use a lower --lr, e.g. 1e-4)")
    p.set_defaults(func=cmd_train)


def _add_predict_parser(sub) -> None:
    p = _subparser(sub, "predict", "segment an image file, or every image of a folder, with a "
                   "saved model")
    p.add_argument("model", help="a .keras file saved by napari-unet")
    p.add_argument("input", help="image file (.tif, .png, .nii, .nii.gz), a .zarr array or "
                   "OME-Zarr image (predicted lazily), or a folder of them")
    p.add_argument("output", help="label image to write (.tif/.png; .zarr for a .zarr input); "
                   "for an input folder, the folder to write <name>.tif files and summary.csv "
                   "into (created if missing)")
    p.add_argument("--probabilities", help="also write the probability map here (.tif, or .zarr; "
                   "a folder for an input folder)")
    p.add_argument("--probabilities-as", choices=("float32", "uint8"), default="float32",
                   help="type of the probability map: float32 (default) or uint8 (probability "
                        "x 255, within 0.5/255; a quarter of the size)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace outputs that exist (for a folder: predict files again "
                        "instead of skipping those already done)")
    p.add_argument("--axes", help="axes of the input, e.g. YX, ZYX, TZYX, YXC (default: those the "
                   "file gives, else guessed)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on an existing dask.distributed cluster (e.g. tcp://host:8786): "
                        "a folder's files as tasks, a .zarr input's blocks; workers must see "
                        "the same folders")
    p.add_argument("--into-input", action="store_true",
                   help="OME-Zarr input: write the labels inside it as labels/OUTPUT (OUTPUT is "
                        "then a name such as 'nuclei'); nothing else of the input changes")
    p.add_argument("--threshold", type=_number(0, 1, low_open=True),
                   help="foreground threshold in (0, 1) (default: the model's calibrated one)")
    p.add_argument("--seed-threshold", type=_number(0, 1, low_open=True),
                   help="interior probability that seeds an object, boundary models (default: "
                        "the model's calibrated one)")
    p.add_argument("--semantic", action="store_true", help="write a 0/1 mask instead of instance ids")
    p.add_argument("--min-size", type=_whole(0),
                   help="remove objects smaller than this (pixels; default: the model's)")
    p.add_argument("--min-physical-size", type=_number(0, 1e30),
                   help="remove objects smaller than this in the file's units: an area per "
                        "plane (e.g. µm²), a volume with --link-planes (µm³); needs the "
                        "file's pixel sizes")
    p.add_argument("--split-touching", action="store_true", help="watershed to separate touching objects")
    p.add_argument("--link-planes", action="store_true", help="label objects in 3D across Z")
    p.add_argument("--tile-size", type=_whole(1),
                   help="tile side in pixels incl. halo (default: from memory)")
    p.add_argument("--batch-size", type=_whole(1), help="tiles per batch (default: from memory)")
    p.add_argument("--uncertainty", help="also write the Monte-Carlo dropout uncertainty (.tif): "
                   "predictive entropy (0-1) here and the spread of the foreground probability "
                   "next to it as <name>_spread.tif; single image files only")
    p.add_argument("--passes", type=_whole(2, 256), default=8,
                   help="stochastic dropout passes for --uncertainty (2-256)")
    p.set_defaults(func=cmd_predict)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="napari-unet", description="Build, train and run U-Nets: demo, "
                     "train, predict, evaluate, info, export.")
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
    p.add_argument("--images", required=True, help="folder of images (.tif, .png, .nii, .nii.gz, .zarr)")
    p.add_argument("--masks", required=True, help="folder of ground-truth labels, same names")
    p.add_argument("--min-size", type=_whole(0),
                   help="remove objects smaller than this (pixels; default: the model's)")
    p.set_defaults(func=cmd_evaluate)

    p = _subparser(sub, "info", "describe a model file without loading TensorFlow, or "
                   "(without one) where networks run here: backend, device, precision")
    p.add_argument("model", nargs="?", help="a .keras file saved by napari-unet")
    p.set_defaults(func=cmd_info)

    p = _subparser(sub, "export", "write a model as a BioImage Model Zoo package (.zip) for "
                   "the bioimage.io tools")
    p.add_argument("model", help="a .keras file saved by napari-unet")
    p.add_argument("output", help="the package to write (.zip)")
    p.add_argument("--name", help="the model's name in the package")
    p.add_argument("--author", action="append", help="an author (repeat for several)")
    p.add_argument("--license", default="CC-BY-4.0", help="SPDX licence of the weights")
    p.add_argument("--test-image", help="a .tif/.png image to ship as the test input "
                   "(default: synthetic nuclei)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing package")
    p.set_defaults(func=cmd_export)
    return parser

