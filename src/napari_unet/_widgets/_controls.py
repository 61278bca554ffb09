"""The controls of the Train and Run widgets, made with their tooltips and set on the
widget (behaviour is in the widgets themselves). No ML here."""

from __future__ import annotations

from typing import Any

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    PushButton,
    SpinBox,
)

from ._base import channel_choice

__all__ = ["add_label_controls", "add_output_controls", "add_folder_controls",
           "add_source_controls", "add_scribble_controls", "add_setting_controls"]

# Run
CURRENT, FROM_FILE = "current model", "model file"
INSTANCES, SEMANTIC = "instance labels", "semantic mask"
# Train
TARGETS = ("auto", "boundary", "foreground", "classes")  # `napari_unet.training.data.TARGETS`
LABEL_MODES = {"dense labels (0 = background)": "dense",
               "scribbles (1 = background, 2.. = classes)": "sparse"}
SCRIBBLES = "scribbles (1 = background, 2.. = classes)"
LAYERS, FOLDERS = "image and labels layers", "image and mask folders"

def add_output_controls(widget: Any) -> None:
    """What Run adds besides the labels, and its Run and Cancel buttons."""
    widget.probabilities = CheckBox(value=False, name="probabilities", label="add probability map",
                                  tooltip="Also add the foreground probability as an Image layer.")
    widget.uncertainty = CheckBox(value=False, name="uncertainty", label="add uncertainty map",
                                tooltip="Also add where the model is unsure (Monte-Carlo dropout: "
                                        "entropy over several passes, bright = unsure; paint scribbles "
                                        "there next). Costs one prediction per pass.")
    widget.passes = SpinBox(value=8, min=2, max=64, name="passes", label="dropout passes",
                          tooltip="Stochastic passes for the uncertainty map.")
    widget.run_button = PushButton(text="Run", name="run", tooltip="Segment the image in the background.")
    widget.cancel_button = PushButton(text="Cancel", name="cancel", enabled=False,
                                    tooltip="Cancel the running Run, folder run or lazy result "
                                            "filling in, after its current batch of tiles, file "
                                            "or block.")


def add_folder_controls(widget: Any) -> None:
    """Run on every image of a folder instead of a layer."""
    widget.folder_in = FileEdit(mode="d", name="folder_in", label="input folder",
                              tooltip="Run on every TIFF/PNG/zarr image in this folder instead of a layer.")
    widget.folder_out = FileEdit(mode="d", name="folder_out", label="output folder",
                               tooltip="Where to write <name>.tif labels and summary.csv (not the input "
                                       "folder). Files already there are skipped, so a stopped run resumes.")
    widget.folder_button = PushButton(text="Run on folder", name="run_folder",
                                    tooltip="Segment every image of the input folder with the chosen model.")


def add_label_controls(widget: Any) -> None:
    """The controls that say how probabilities become labels (`LabelOptions`)."""
    widget.calibrated = CheckBox(value=True, name="calibrated", label="model's settings",
                               tooltip="Use the threshold, seed threshold and minimum object size chosen "
                                       "on the validation data when the model was trained (uncheck to set "
                                       "threshold and min object size here).")
    widget.threshold = FloatSpinBox(value=0.5, min=0.01, max=0.99, step=0.05, name="threshold",
                                  label="threshold", enabled=False,
                                  tooltip="Foreground probability above which a pixel is an object.")
    widget.output = ComboBox(choices=[INSTANCES, SEMANTIC], value=INSTANCES, name="output", label="output",
                           tooltip="Instance labels: one id per object. Semantic mask: 1 = object, 0 = background.")
    widget.min_size = SpinBox(value=0, min=0, max=1_000_000, name="min_size", label="min object size",
                            enabled=False, tooltip="Remove objects smaller than this many pixels (0 = keep all).")
    widget.split_touching = CheckBox(value=False, name="split_touching", label="split touching",
                                   tooltip="Separate touching objects with a watershed on the distance transform.")
    widget.link_planes = CheckBox(value=False, name="link_planes", label="link objects in 3D",
                                tooltip="For stacks: connect objects across Z (3D labels) instead of labelling each plane.")


def add_source_controls(widget: Any) -> None:
    """Where the training pairs come from: layers (above) or two folders of files."""
    widget.source = ComboBox(choices=[LAYERS, FOLDERS], value=LAYERS, name="source", label="train on",
                           tooltip="Layers open in the viewer, or folders of image files and their "
                                   "masks with the same names (read by the engine, not the viewer).")
    widget.channels = channel_choice(widget._other_image_layers)
    widget.images_dir = FileEdit(mode="d", name="images_dir", label="images folder",
                               tooltip="Folder of .tif/.png training images.")
    widget.masks_dir = FileEdit(mode="d", name="masks_dir", label="masks folder",
                              tooltip="Folder of label images named like their images.")


def add_scribble_controls(widget: Any) -> None:
    """Scribble mode: class names, a button that makes the layer to paint, its legend;
    fine-tuning and the live preview."""
    widget.class_names = LineEdit(value="nucleus", name="class_names", label="object classes",
                                tooltip="Names of the object classes, comma separated (e.g. 'nucleus, "
                                        "cytoplasm'); scribbles paint 1 = background, 2 = the first, ...")
    widget.new_scribbles = PushButton(text="New scribble layer", name="new_scribbles",
                                    tooltip="Make an empty labels layer on the chosen image to paint "
                                            "scribbles on, and switch to scribble labels.")
    widget.legend = Label(value="", name="legend", label="paint",
                        tooltip="Which label value paints which class on the scribble layer.")
    widget.freeze_encoder = CheckBox(value=False, name="freeze_encoder",
                                   label="fine-tune (freeze encoder)",
                                   tooltip="Train only the decoder of the current (e.g. loaded) model; "
                                           "use a low learning rate such as 1e-4.")
    widget.preview_every = SpinBox(value=5, min=0, max=600, name="preview_every", label="live preview (s)",
                                 tooltip="Every so many seconds, label the plane on screen with "
                                                      "the current weights (a preview layer); 0 = off. "
                                                      "Previews take at most 10 % of the training time.")


def patch_size_tooltip(config: Any, side: int) -> str:
    """The patch size box's tooltip for the `UNetConfig` ``config``: for a 3D network it
    says how many planes a patch of ``side`` px takes (`volume_patch_shape`)."""
    text = f"Side in pixels of the random training patches (a multiple of 2**depth = {config.size_multiple})."
    if config.ndim != 3:
        return text
    from ..model.costs import volume_patch_shape

    shape = "x".join(map(str, volume_patch_shape(config, side, 1 << 30)))
    return (f"{text} A 3D network trains on patches of {shape} voxels (Z x Y x X; fewer planes "
            "on thinner stacks). Left at 128 with batch size 8, both are made smaller until "
            "a batch fits in half of the free memory.")


def add_setting_controls(widget: Any) -> None:
    """The controls of `napari_unet.training.settings.TrainSettings` (patch size ... loss)."""
    widget.patch_size = SpinBox(value=128, min=16, max=1024, step=16, name="patch_size", label="patch size",
                              tooltip="Side in pixels of the random training patches (a multiple of 2**depth).")
    widget.epochs = SpinBox(value=0, min=0, max=10000, name="epochs", label="epochs",
                          tooltip="0 = automatic: about 20 passes over the labelled pixels, 600-2000 "
                                  "batches (200 for scribbles; at least 5 epochs) in 5-100 epochs (with a time limit: until it, or until "
                                  "no better epoch for a while). Training keeps the best epoch.")
    widget.time_limit = FloatSpinBox(value=0.0, min=0.0, max=10000.0, step=0.5, name="time_limit",
                                     label="time limit (min)",
                                     tooltip="End training after this many minutes of training (not counting the "
                                             "engine's start or compiling the network), keeping the best epoch "
                                             "(0 = no limit).")
    widget.steps = SpinBox(value=0, min=0, max=100000, name="steps", label="batches per epoch",
                         tooltip="0 = automatic (about two passes over the labelled pixels, at least 10).")
    widget.batch_size = SpinBox(value=8, min=1, max=256, name="batch_size", label="batch size",
                              tooltip="Patches per training step; lower it if memory runs out.")
    widget.learning_rate = FloatSpinBox(value=1e-3, min=1e-6, max=1.0, step=1e-4, name="learning_rate",
                                      label="learning rate", tooltip="Adam learning rate.")
    widget.learning_rate.native.setDecimals(6)
    widget.validation = FloatSpinBox(value=0.15, min=0.0, max=0.5, step=0.05, name="validation",
                                   label="validation fraction",
                                   tooltip="Share of labelled blocks held out to measure validation loss (best weights are kept).")
    widget.target = ComboBox(choices=list(TARGETS), value="auto", name="target", label="learn",
                           tooltip="boundary: background / interior / boundary from instance labels, so "
                                   "touching objects stay apart (auto picks it when the labels hold "
                                   "several object ids). foreground: object or not (binary masks). "
                                   "classes: one class per label value (multi-class models).")
    widget.augment = CheckBox(value=True, name="augment", label="augment",
                            tooltip="Random flips and 90° rotations, elastic deformation, brightness, gamma and noise changes of each patch.")
    widget.loss = ComboBox(choices=["bce", "bce_dice"], value="bce", name="loss", label="loss",
                         tooltip="bce: cross-entropy. bce_dice: cross-entropy + soft Dice (helps small objects).")
