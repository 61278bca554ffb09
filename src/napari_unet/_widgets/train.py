"""U-Net: Train — pick image/labels layer pairs and train in a worker with live progress."""

from __future__ import annotations

from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, Label, LineEdit, ProgressBar, PushButton

from ..engine.protocol import Engine
from ..model.config import UNetConfig
from ..model.summary import ModelSummary
from ..training.request import TrainRequest
from ..training.settings import TrainSettings
from ._base import SessionWidget
from ._controls import (
    FOLDERS,
    LABEL_MODES,
    SCRIBBLES,
    add_scribble_controls,
    add_setting_controls,
    add_source_controls,
    patch_size_tooltip,
)
from ._layers import (LayerPairs, labels_snapshot, layer_array, layer_axes, layer_spacing,
                      with_channels)
from ._plot import LossPlot
from ._scribble import (
    class_names_from_text,
    legend,
    preview_layer,
    preview_region,
    scribble_layer,
)
from ._train_progress import progress_position
from ._workers import ActivityProgress, report_error, start_worker


def train_job(engine: Engine, request: TrainRequest):
    """Worker body: ask the engine which device runs, then train its model with ``request``
    (a `TrainRequest`), passing progress and previews on; returns the trained model's
    `ModelSummary`."""
    yield ("device", engine.device())
    return (yield from engine.train(request))


class TrainWidget(SessionWidget):
    """Train the viewer's model on one or more (image, labels) layer pairs."""

    def __init__(self, napari_viewer: Any):
        super().__init__(napari_viewer)
        self._stopping = False
        self._time_limit: float | None = None  # seconds of a run the time limit ends
        self._preview_target = None  # (image layer name, axes, region) of the live preview
        self._made_preview = None  # the preview layer the running training added
        self._preview_note = ""  # why the last preview was not shown
        self.previews_shown = self._previews_before = 0
        self.activity = None  # the job's bar in napari's activity dock
        self.pairs = LayerPairs()
        self.image = ComboBox(choices=self._image_layers, name="image", label="image",
                              tooltip="Image layer to train on.")
        self.labels = ComboBox(choices=self._labels_layers, name="labels", label="labels",
                               tooltip="Labels layer painted on that image (same size).")
        self.add_pair = PushButton(text="Add pair", name="add_pair",
                                   tooltip="Add this image/labels pair to the list; training uses all listed pairs.")
        self.clear_pairs = PushButton(text="Clear pairs", name="clear_pairs", tooltip="Empty the list of pairs.")
        self.pairs_label = Label(value=LayerPairs.EMPTY, name="pairs_label", label="pairs",
                                 tooltip="Pairs used for training.")
        self.axes = LineEdit(value="", name="axes", label="axes",
                             tooltip="Axes of the image, e.g. YX, ZYX, YXC, CYX, CZYX. Empty = guess from the layer.")
        self.label_mode = ComboBox(choices=list(LABEL_MODES), name="label_mode", label="labels are",
                                   tooltip="Dense: every pixel labelled, 0 = background. Scribbles: paint a few strokes, 0 = unlabelled (ignored), 1 = background, 2.. = objects/classes.")
        add_source_controls(self)
        add_scribble_controls(self)
        add_setting_controls(self)
        self.train_button = PushButton(text="Train", name="train", tooltip="Start training in the background.")
        self.stop_button = PushButton(text="Stop", name="stop", enabled=False,
                                      tooltip="Stop after the batches in progress (at most 4); the best weights so far are kept.")
        self.progress = ProgressBar(value=0, min=0, max=1, name="progress", label="progress",
                                    tooltip="Batches done in this training run.")
        self.device = Label(value="shown when training starts", name="device",
                            tooltip="Where the network runs.")
        self.status = Label(value=self.session.description, name="status", tooltip="What is happening.")
        self.plot = LossPlot(getattr(napari_viewer, "theme", "dark"))
        self.extend([self.source, self.image, self.channels, self.labels, self.axes, self.add_pair,
                     self.clear_pairs,
                     self.pairs_label, self.images_dir, self.masks_dir, self.label_mode,
                     self.class_names, self.new_scribbles, self.legend, self.patch_size,
                     self.epochs, self.time_limit, self.steps, self.batch_size, self.learning_rate, self.validation,
                     self.target, self.augment, self.loss, self.freeze_encoder, self.preview_every,
                     self.train_button, self.stop_button, self.progress, self.device, self.plot],
                    status=self.status)
        self.wrap_labels(self.pairs_label, self.legend, self.device)
        self.source.changed.connect(self._show_source)
        self._show_source()
        self._snap_patch_size()
        self.image.changed.connect(lambda *_: setattr(self.axes, "value", ""))  # a new guess
        self.image.changed.connect(lambda *_: self.channels.reset_choices())
        self.remember("train", [self.label_mode, self.patch_size, self.epochs,
                                self.time_limit, self.steps, self.batch_size, self.learning_rate,
                                self.validation, self.target, self.augment,
                                self.loss, self.class_names, self.preview_every])
        self._connect_controls()

    def _connect_controls(self) -> None:
        """What each control does, and what follows the session, the viewer and the theme."""
        self.new_scribbles.changed.connect(self.make_scribble_layer)
        self.patch_size.changed.connect(self._snap_patch_size)
        self.class_names.changed.connect(lambda *_: self._show_legend())
        self.freeze_encoder.changed.connect(self._on_freeze)
        self.add_pair.changed.connect(self._add_pair)
        self.clear_pairs.changed.connect(self._clear_pairs)
        self.train_button.changed.connect(self.start)
        self.stop_button.changed.connect(self.stop)
        self.follow(self.session.changed, self._on_model_changed)
        self.follow(self.session.busy_changed, self._on_busy)
        self.follow(self.viewer.events.theme, lambda event: self.plot.set_theme(event.value))
        self.labels.changed.connect(lambda *_: self._show_legend())
        self.label_mode.changed.connect(lambda *_: self._show_legend())

    def _show_source(self, *_: Any) -> None:
        folders = self.source.value == FOLDERS
        for control in (self.images_dir, self.masks_dir):
            control.visible = folders
        for control in (self.image, self.channels, self.labels, self.add_pair, self.clear_pairs,
                        self.pairs_label, self.new_scribbles):
            control.visible = not folders

    def _show_legend(self) -> None:
        """The scribble legend: which value paints which class, in the layer's colours."""
        layer = self.labels.value
        if LABEL_MODES[self.label_mode.value] != "sparse" or layer is None:
            self.legend.value = ""
            return
        try:
            self.legend.value = legend(layer, class_names_from_text(self.class_names.value))
        except ValueError as err:
            self.legend.value = str(err)

    def make_scribble_layer(self, *_: Any) -> None:
        """Make (or select) "<image> scribbles" for the chosen image and switch to scribbles."""
        self.last_error = ""
        try:
            image = self.image.value
            if image is None:
                raise ValueError("choose the image to paint on first")
            channels = self.session.summary.config.in_channels if self.session.summary else None
            layer = scribble_layer(self.viewer, image, layer_axes(image, channels, self.axes.value))
        except ValueError as err:
            report_error(self, "Scribbles", err)
            return
        self.reset_choices()
        self.labels.value = layer
        self.label_mode.value = SCRIBBLES
        self.validation.value = 0.0  # held-out strokes would only measure the easy pixels
        self._show_legend()
        self.status.value = (f"paint on '{layer.name}', then press Train (validation is off: "
                             "with scribbles, judge the live preview)")

    def _snap_patch_size(self, *_: Any) -> None:
        """Keep the patch size a multiple of 2**depth of the model (the default's: 16): the
        arrows step by it, and a typed value is rounded to the nearest one (said in the
        status). The tooltip says what a 3D network's patches hold."""
        config = self.session.summary.config if self.session.summary else UNetConfig()
        m = config.size_multiple
        self.patch_size.tooltip = patch_size_tooltip(config, self.patch_size.value)
        self.patch_size.step = m
        self.patch_size.min = m
        value = self.patch_size.value
        snapped = max(m, int(round(value / m)) * m)
        if snapped != value:
            self.patch_size.value = snapped
            self.status.value = (f"patch size {value} is not a multiple of 2**depth = {m}: "
                                 f"using {snapped}")

    def _on_freeze(self, frozen: bool) -> None:
        if frozen and self.learning_rate.value >= 1e-3:
            self.learning_rate.value = 1e-4  # fine-tuning wants small steps

    def _add_pair(self, *_: Any) -> None:
        try:
            self.pairs_label.value = self.pairs.add(self.image.value, self.labels.value)
        except ValueError as err:
            report_error(self, "Train", err)

    def _clear_pairs(self, *_: Any) -> None:
        self.pairs_label.value = self.pairs.clear()

    def settings(self) -> TrainSettings:
        """The `TrainSettings` of the controls (``ValueError`` if one is invalid)."""
        return TrainSettings(**{
            "freeze_encoder": bool(self.freeze_encoder.value),
            "patch_size": self.patch_size.value,
            "batch_size": self.batch_size.value,
            "epochs": self.epochs.value or None,
            "time_budget": 60.0 * self.time_limit.value if self.time_limit.value else None,
            "steps_per_epoch": self.steps.value or None,
            "learning_rate": float(self.learning_rate.value),
            "validation_fraction": float(self.validation.value),
            "augment": bool(self.augment.value),
            "target": self.target.value,
            "loss": self.loss.value,
            "label_mode": LABEL_MODES[self.label_mode.value],
        })

    def start(self, *_: Any) -> None:
        """Read the layers (GUI thread), then train in a worker: the current model further
        when it was trained (the loss plot goes on), else a new one."""
        self.last_error = ""
        if self.wait_for_engine("Train", self.start):
            return
        try:
            request = (self._folder_request() if self.source.value == FOLDERS
                       else self._layers_request())
        except ValueError as err:
            report_error(self, "Train", err)
            return
        self._stopping = False
        self._preview_note = ""
        self._previews_before = self.previews_shown
        limit = 60.0 * self.time_limit.value  # automatic epochs end at the time limit
        self._time_limit = limit if limit and not self.epochs.value else None
        history = self.session.summary.history if self.session.summary else {}
        self.plot.show_history(history)  # a trained model goes on: its curve continues
        self.progress.value = 0
        self.session.set_busy(True, "training")
        self.stop_button.enabled = True
        first = "" if self.session.engine.alive else "starting the engine, then "
        self.status.value = ("continuing training…" if history else
                             f"{first}compiling the network: the first batch takes a few "
                             "seconds…" if self.session.summary else
                             f"no model yet: {first}training a new default U-Net…")
        self.activity = ActivityProgress("U-Net training")
        self.worker = start_worker(train_job, self.session.engine, request,
                                   on_yield=self._on_progress, on_return=self._on_done,
                                   on_error=self._on_error, on_finish=self._on_finish)

    def _on_error(self, err: BaseException) -> None:
        """Report a failed training; a preview layer it made and never filled goes again."""
        report_error(self, "Training failed", err)
        layer, self._made_preview = self._made_preview, None
        if layer is not None and self.previews_shown == self._previews_before and \
                layer in self.viewer.layers:
            self.viewer.layers.remove(layer)

    def _new_config(self) -> UNetConfig | None:
        """The config of a new network (None when the viewer has a model): for scribbles of
        several object classes one output per class (its input channels follow the
        image's, `TrainRequest.resolved`)."""
        if self.session.summary is not None:
            return None
        n_classes = 1
        if LABEL_MODES[self.label_mode.value] == "sparse":
            names = class_names_from_text(self.class_names.value)
            if len(names) > 2:
                n_classes = len(names)
        return UNetConfig(n_classes=n_classes)

    def _class_names(self) -> list[str] | None:
        """The class names to store in the model: for scribbles on a model not yet trained."""
        summary = self.session.summary
        if LABEL_MODES[self.label_mode.value] != "sparse" or (summary and summary.trained):
            return None
        return class_names_from_text(self.class_names.value)

    def _layers_request(self) -> TrainRequest:
        """The `TrainRequest` of the chosen layer pairs, with the live preview of the first
        image's plane on screen."""
        pairs = self.pairs.chosen(self.viewer, self.image.value, self.labels.value)
        labels = [labels_snapshot(lab) for _, lab in pairs]
        summary = self.session.summary
        channels = summary.config.in_channels if summary else None
        if self.channels.value:  # napari's channel_axis layers, as one image's channels
            if self.pairs:
                raise ValueError("more channels go with the image above, not a list of pairs: "
                                 "clear the pairs")
            image, ax = with_channels(pairs[0][0], list(self.channels.value), self.axes.value)
            images, axes, own_axes = [image], [ax], ax[1:]
            spacing = [layer_spacing(pairs[0][0], own_axes)]
        else:
            images = [layer_array(img) for img, _ in pairs]
            axes = [layer_axes(img, channels, self.axes.value) for img, _ in pairs]
            own_axes = axes[0]
            spacing = [layer_spacing(img, ax) for (img, _), ax in zip(pairs, axes)]
        self._preview_target = self._made_preview = None
        preview = None
        volumes = summary is not None and summary.config.ndim == 3  # trains without a preview
        if self.preview_every.value and not volumes:
            from ..training.preview import Preview

            region = preview_region(self.viewer, pairs[0][0], own_axes)
            self._preview_target = (pairs[0][0].name, own_axes, region)
            # made now, in the click: adding a layer takes napari ~0.3 s, too long mid-training
            shape = (region["rows"][1] - region["rows"][0], region["cols"][1] - region["cols"][0])
            made = f"{pairs[0][0].name} preview" not in self.viewer.layers
            layer = preview_layer(self.viewer, pairs[0][0], own_axes, region,
                                  np.zeros(shape, np.uint8))
            self._made_preview = layer if made else None
            preview = Preview(0, region["plane"], region["rows"], region["cols"],
                              float(self.preview_every.value))
        return TrainRequest(images, labels, axes, [img.name for img, _ in pairs],
                            settings=self.settings(), new_config=self._new_config(),
                            preview=preview, class_names=self._class_names(), spacing=spacing)

    def _folder_request(self) -> TrainRequest:
        """The `TrainRequest` of the two folders (the engine reads them itself)."""
        folders = [str(self.images_dir.value), str(self.masks_dir.value)]
        if any(f in ("", ".") for f in folders):
            raise ValueError("choose the images folder and the masks folder")
        self._preview_target = self._made_preview = None
        axes = self.axes.value.strip().upper() or None
        return TrainRequest(axes=axes, folders=tuple(folders), settings=self.settings(),
                            new_config=None if self.session.summary else UNetConfig())

    def stop(self, *_: Any) -> None:
        self._stopping = True
        self.session.engine.stop()
        self.stop_button.enabled = False
        self.status.value = "stopping after the batches in progress…"

    def _on_progress(self, event: Any) -> None:
        if self.closed:
            return
        if isinstance(event, tuple):
            self.device.value = event[1]
            return
        if hasattr(event, "foreground"):  # a `TrainPreview`
            self._show_preview(event)
            return
        if event.phase == "calibrate":
            self.status.value = ("training done; choosing the label settings on the held-out "
                                 "data (calibration)…")
            return
        value, self.progress.max, epoch = progress_position(event, self._time_limit)
        self.progress.value = value
        if event.phase == "epoch":
            self.plot.add_epoch(event.logs)
            val, where = event.logs.get("val_iou"), self._validated_on()
            self.status.value = (f"{epoch}: loss {event.logs['loss']:.4f}"
                                 + (f", val IoU {val:.3f}{where}" if val is not None else ""))
        elif not self._stopping:
            self.status.value = (f"{epoch}, batch {event.batch}/{event.batches}: loss "
                                 f"{event.logs['loss']:.4f}{self._preview_note}")
        if self.activity is not None:
            self.activity.show(self.progress.value, self.progress.max, f"U-Net training, {epoch}")

    def _show_preview(self, event: Any) -> None:
        """Put a preview's labels on the image it was made of (if still open). A network that
        has learnt little marks the whole view as one object: that is said, not shown."""
        if self._preview_target is None or self._preview_target[0] not in self.viewer.layers:
            return
        if np.count_nonzero(event.labels) > 0.95 * event.labels.size:
            self._preview_note = "; preview: everything is one object so far (learnt little yet)"
            return
        self._preview_note = ""
        name, axes, region = self._preview_target
        preview_layer(self.viewer, self.viewer.layers[name], axes, region, event.labels)
        self.previews_shown += 1

    def _on_model_changed(self, description: str) -> None:
        """Say which model the viewer has now, and plot its training history (if any)."""
        self.status.value = description
        self._on_busy(self.session.busy)
        self._snap_patch_size()
        if self.session.summary is None:  # the engine ended: its curves went with it
            self.plot.clear()
        elif self.worker is None:  # a loaded or new model, not the one training now
            self.plot.show_history(self.session.summary.history)

    def _validated_on(self) -> str:
        """" (on scribbles only)" when validation pixels are scribbles, which flatter the IoU."""
        return " (on scribbles only)" if LABEL_MODES[self.label_mode.value] == "sparse" else ""

    def _on_done(self, summary: ModelSummary) -> None:
        """Keep the trained model's summary (also when the dock was closed meanwhile); say
        loudly when its labels are not usable yet."""
        self.session.set_summary(summary, summary.report())
        self.progress.value = self.progress.max
        target = self._preview_target
        if target is not None and f"{target[0]} preview" in self.viewer.layers:
            self.viewer.layers[f"{target[0]} preview"].visible = False  # Run shows the result
        if summary.warning:
            from napari.utils.notifications import show_warning

            show_warning(f"U-Net training: {summary.warning}")

    def _on_finish(self) -> None:
        self.worker = None
        if self.activity is not None:
            self.activity.close()
            self.activity = None
        self.session.set_busy(False)
        if not self.closed:
            self.stop_button.enabled = False

    def _on_busy(self, busy: bool) -> None:
        self.train_button.enabled = not self.session.blocked
        trained = bool(self.session.summary and self.session.summary.trained)
        self.train_button.text = "Continue training" if trained else "Train"
