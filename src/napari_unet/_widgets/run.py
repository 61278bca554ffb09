"""U-Net: Run — segment an image layer with the viewer's model or a model file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import (
    ComboBox,
    FileEdit,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    SpinBox,
)

from ._base import SessionWidget, channel_choice
from ._controls import (
    CURRENT,
    FROM_FILE,
    INSTANCES,
    add_folder_controls,
    add_label_controls,
    add_output_controls,
)
from ._evaluate import evaluate_job, evaluation_inputs, scores_text
from ._jobs import as_lazy, folder_job, lazy_run_job, run_job
from ._layers import (few_planes_note, layer_array, layer_axes, layer_spacing, physical_size,
                      spatial_placement, with_channels)
from ._lazy_fill import AFTER_FILL, LazyFill
from ._workers import ActivityProgress, apply_layer_tuples, report_error, start_worker


class RunWidget(SessionWidget):
    """Predict labels for an image layer; a second run updates the same layer."""

    def __init__(self, napari_viewer: Any):
        super().__init__(napari_viewer)
        self.activity = None  # the running job's bar in napari's activity dock
        self.fill = LazyFill(self)  # computes the last lazy result's blocks as they are viewed
        self.lazy_label = ""  # "<image> U-Net (model, settings)" of the last lazy result
        self.image = ComboBox(choices=self._image_layers, name="image", label="image",
                              tooltip="Image layer to segment (2D, stack or time-lapse; RGB allowed).")
        self.source = ComboBox(choices=[CURRENT, FROM_FILE], value=CURRENT, name="source", label="model",
                               tooltip="The model built/trained/loaded in this viewer, or a .keras file.")
        self.model_file = FileEdit(mode="r", filter="*.keras *.zip", name="model_file", label="model file",
                                   tooltip="A .keras model saved by napari-unet, or a bioimage.io package (.zip) "
                                           "it exported (used when model = model file).")
        self.channels = channel_choice(self._other_image_layers)
        add_label_controls(self)
        self.axes = LineEdit(value="", name="axes", label="axes",
                             tooltip="Axes of the image, e.g. YX, ZYX, TZYX, YXC, CZYX. Empty = guess from the layer.")
        self.tile_size = SpinBox(value=0, min=0, max=16384, step=16, name="tile_size", label="tile size",
                                 tooltip="Side of the tiles sent to the network (incl. halo), a multiple of 2**depth. 0 = from free memory.")
        add_output_controls(self)
        add_folder_controls(self)
        self.truth = ComboBox(choices=self._labels_layers, name="truth", label="ground truth",
                              tooltip="A labels layer with the true objects of the image above, to score "
                                      "its U-Net labels against.")
        self.evaluate_button = PushButton(text="Evaluate", name="evaluate",
                                          tooltip="Score the image's U-Net labels against the ground truth: "
                                                  "AP, precision, recall, F1, IoU (napari_unet.evaluate).")
        self.scores = Label(value="", name="scores", tooltip="The last evaluation.")
        self.progress = ProgressBar(value=0, min=0, max=1, name="progress", label="progress",
                                    tooltip="Tiles (or planes) done.")
        self.status = Label(value="", name="status", tooltip="What is happening.")
        self.extend([self.image, self.channels, self.source, self.model_file, self.calibrated, self.threshold,
                     self.output, self.min_size, self.split_touching, self.link_planes, self.axes,
                     self.tile_size, self.probabilities, self.uncertainty, self.passes,
                     self.run_button, self.cancel_button, self.folder_in,
                     self.folder_out, self.folder_button, self.truth, self.evaluate_button,
                     self.scores, self.progress], status=self.status)
        self.wrap_labels(self.scores)
        self.image.changed.connect(lambda *_: setattr(self.axes, "value", ""))  # a new guess
        self.image.changed.connect(lambda *_: self.channels.reset_choices())
        self.calibrated.changed.connect(self._on_calibrated)
        for control in (self.link_planes, self.output, self.image, self.axes):
            control.changed.connect(self._show_model_values)
        self.remember("run", [self.source, self.folder_in, self.folder_out, self.calibrated,
                              self.threshold, self.output, self.min_size, self.split_touching,
                              self.link_planes, self.tile_size, self.probabilities,
                              self.uncertainty, self.passes])
        self.run_button.changed.connect(self.start)
        self.cancel_button.changed.connect(self.cancel)
        self.folder_button.changed.connect(self.start_folder)
        self.evaluate_button.changed.connect(self.start_evaluate)
        self.follow(self.session.busy_changed, self._on_busy)
        self.follow(self.session.changed, self._on_model_changed)
        for event in (self.viewer.dims.events.current_step, self.viewer.dims.events.ndisplay):
            self.follow(event, self.fill.resume)  # after a Cancel, a new view goes on

    def _on_busy(self, busy: bool) -> None:
        self.run_button.enabled = self.folder_button.enabled = not self.session.blocked
        if not busy:
            self.fill.request()  # lazy layers viewed while the engine was busy

    def _on_model_changed(self, *_: Any) -> None:
        """A new model: lazy layers of the viewer's old one stop filling (no mixed results)."""
        self._show_model_values()
        if self.fill.predictors and self.fill.predictors[0].model_path is None:
            self.fill.detach()
            if self.session.summary is not None:  # (else the engine died: its error stays)
                self.status.value = ("the model changed: the lazy result keeps what it "
                                     "computed; press Run again for the new model's")

    def _on_destroyed(self, *args: Any) -> None:
        super()._on_destroyed(*args)
        self.fill.close()  # the lazy layers keep what they computed, marked if incomplete

    def _model_choice(self) -> tuple[bool, str | None]:
        """(ok, model file or None for the viewer's model); reports what is missing."""
        if self.source.value == CURRENT:
            if not self.session.has_model:
                report_error(self, "Run", ValueError(
                    "there is no model in this viewer yet: build and train one, or choose 'model file'"))
                return False, None
            return True, None
        model_path = str(self.model_file.value or "")
        if not model_path.endswith((".keras", ".zip")) or not Path(model_path).is_file():
            report_error(self, "Run", ValueError(
                f"choose an existing .keras model file or bioimage.io .zip (got {model_path!r})"))
            return False, None
        return True, model_path

    def start_folder(self, *_: Any) -> None:
        """Predict every image of the input folder into the output folder, in a worker."""
        self.last_error = ""
        if self.wait_for_engine("Run on folder", self.start_folder):
            return
        in_dir, out_dir = str(self.folder_in.value or ""), str(self.folder_out.value or "")
        if in_dir in ("", ".") or not Path(in_dir).is_dir() or out_dir in ("", "."):
            report_error(self, "Run on folder", ValueError("choose an existing input folder and "
                                                           "an output folder"))
            return
        ok, model_path = self._model_choice()
        if not ok:
            return
        self.session.set_busy(True, "segmenting")
        self.progress.value = 0
        self.status.value = f"segmenting the images of {in_dir}…"
        self.worker = start_worker(folder_job, self.session.engine, in_dir, out_dir, self.options(),
                                   model_path, on_yield=self._on_progress,
                                   on_return=lambda rows: self._on_folder_done(rows, out_dir),
                                   on_error=lambda err: self._on_error("Run on folder failed", err),
                                   on_finish=self._on_finish)
        self.cancel_button.enabled = True
        self.activity = ActivityProgress(f"U-Net: {Path(in_dir).name}/")

    def start_evaluate(self, *_: Any) -> None:
        """Score the chosen image's U-Net labels against the ground-truth layer, in a worker."""
        self.last_error = ""
        try:
            labels, truth, name = evaluation_inputs(self.viewer, self.image.value, self.truth.value)
        except ValueError as err:
            report_error(self, "Evaluate", err)
            return
        unit = 3 if self._links_in_3d() else 2
        if labels.ndim > unit:
            name += ", object by object in each " + ("3D stack" if unit == 3 else "plane")
        self.scores.value = f"scoring {name}…"
        self.evaluate_button.enabled = False
        self.evaluator = start_worker(
            evaluate_job, labels.copy(), np.array(truth, copy=True), unit,
            on_return=lambda metrics: self._show_scores(metrics, name),
            on_error=lambda err: report_error(self, "Evaluate failed", err),
            on_finish=lambda: setattr(self.evaluate_button, "enabled", True))

    def _show_scores(self, metrics: dict, name: str) -> None:
        self.last_scores = metrics
        if not self.closed:
            self.scores.value = scores_text(metrics, name)

    def _on_folder_done(self, rows: list, out_dir: str) -> None:
        if self.closed:
            return
        counts = {status: sum(r.status == status for r in rows)
                  for status in ("done", "skipped", "failed")}
        self.status.value = (f"{counts['done']} done, {counts['skipped']} already there, "
                             f"{counts['failed']} failed; summary.csv in {out_dir}")

    def _on_calibrated(self, calibrated: bool) -> None:
        self.threshold.enabled = self.min_size.enabled = not calibrated
        self._show_model_values()

    def _show_model_values(self, *_: Any) -> None:
        """With "model's settings" on, show the viewer's model's threshold and min size in
        the (greyed) boxes, so what runs is what is shown: its values for objects linked
        in 3D when it has them and this Run links objects in a stack."""
        summary = self.session.summary
        if self.calibrated.value and summary is not None:
            decoding = summary.decoding_for(self._links_in_3d())
            self.threshold.value = decoding.threshold
            self.min_size.value = decoding.min_size

    def options(self) -> dict:
        """``labels`` (`LabelOptions`; threshold and min size None, the model's own, when
        "model's settings" is on), ``tile_size`` (None: from memory), ``probabilities`` and
        ``uncertainty`` (dropout passes for the uncertainty maps, 0 = none), and the
        ``provenance`` the result layers keep in their metadata."""
        from ..labels.options import LabelOptions
        from ..version import __version__

        mine, axes = not self.calibrated.value, self._image_axes()
        labels = LabelOptions(float(self.threshold.value) if mine else None,
                              self.output.value == INSTANCES, self.min_size.value if mine else None,
                              bool(self.split_touching.value), bool(self.link_planes.value),
                              spacing=axes and layer_spacing(self.image.value, axes))
        provenance = {"model": self._model_used().lstrip(", "), "napari_unet": __version__,
                      "image": getattr(self.image.value, "name", ""),
                      "options": {k: v for k, v in vars(labels).items() if v is not None},
                      "tile_size": self.tile_size.value or None}
        return {"labels": labels, "tile_size": self.tile_size.value or None,
                "probabilities": bool(self.probabilities.value),
                "uncertainty": int(self.passes.value) if self.uncertainty.value else 0,
                "provenance": provenance}

    def start(self, *_: Any) -> None:
        """Read the layer and model (GUI thread), then predict in a worker."""
        self.last_error = ""
        if self.wait_for_engine("Run", self.start):
            return
        layer = self.image.value
        if layer is None:
            report_error(self, "Run", ValueError("choose an image layer to segment"))
            return
        ok, model_path = self._model_choice()
        if not ok:
            return
        try:
            data, axes = self._input(layer, model_path)
        except ValueError as err:
            report_error(self, "Run", err)
            return
        self.session.set_busy(True, "segmenting")
        self.progress.value = 0
        lazy = as_lazy(data)
        if lazy is not None:
            self.status.value = f"preparing a lazy result for {layer.name}…"
            job, done = lazy_run_job, self._on_lazy_done
        else:
            self.status.value = f"segmenting {layer.name}…"
            job, done = run_job, self._on_done
        self.worker = start_worker(job, self.session.engine, lazy if lazy is not None else data,
                                   axes, layer.name, spatial_placement(layer), self.options(),
                                   model_path, on_yield=self._on_progress, on_return=done,
                                   on_error=lambda err: self._on_error("Run failed", err),
                                   on_finish=self._on_finish)
        self.cancel_button.enabled = True
        self.activity = ActivityProgress(f"U-Net: {layer.name}")

    def _input(self, layer: Any, model_path: str | None) -> tuple[Any, str | None]:
        """The array to segment and its axes (None: the engine guesses them with the model
        file's channels): the layer's data, or it and the *more channels* layers stacked."""
        if self.channels.value:
            return with_channels(layer, list(self.channels.value), self.axes.value)
        channels = None if model_path else self.session.summary.config.in_channels
        axes = (layer_axes(layer, channels, self.axes.value)
                if channels is not None or layer.rgb or self.axes.value.strip() else None)
        if axes is not None and channels == 1 and axes.endswith("C") and layer.rgb:
            raise ValueError(f"'{layer.name}' is an RGB image but the model takes 1 channel: build "
                             "a model with 3 input channels, or convert the image to grey")
        return layer_array(layer), axes

    def _on_progress(self, event: Any) -> None:
        if self.closed:
            return
        self.progress.max = max(1, event.total)
        self.progress.value = event.done
        if self.activity is not None:
            self.activity.show(event.done, max(1, event.total))
        if event.message:
            self.status.value = event.message

    def _model_used(self) -> str:
        model = (Path(str(self.model_file.value)).name if self.source.value == FROM_FILE
                 else "the viewer's model")
        return model + self._settings_used()

    def _on_done(self, tuples: list) -> None:
        labels = apply_layer_tuples(self.viewer, tuples)[0]
        if not self.closed:
            kept = (f"; '{tuples[0][1]['name']}' has hand edits, so they stay and the new labels "
                    f"are '{labels.name}'" if labels.name != tuples[0][1]["name"] else "")
            self.status.value = (f"{labels.name}: {int(labels.data.max())} objects/classes "
                                 f"({self._model_used()}){kept}"
                                 f"{few_planes_note(labels.data.shape, self.axes.value)}")
            self.scores.value = ""  # the last scores were of the labels this Run replaced

    def _on_lazy_done(self, result: tuple) -> None:
        """Show the lazy result at once, empty; `LazyFill` computes what napari shows."""
        tuples, predictors = result
        self.session.set_busy(False)  # the job is over: the fill may use the engine
        self.lazy_label = f"{tuples[0][1]['name']} ({self._model_used()})"
        self.fill.show(apply_layer_tuples(self.viewer, self.fill.wrap(tuples, predictors)))
        if not self.closed:
            self.status.value = f"{self.lazy_label}: lazy, computed as you view it"
            self.scores.value = ""

    def on_fill_started(self) -> None:
        self.cancel_button.enabled = True
        self.progress.value = 0

    def on_fill_progress(self, blocks: int, event: Any) -> None:
        """``blocks`` network calls so far; ``event`` (`PredictProgress` of chunks, or None)."""
        if self.closed:
            return
        if event is not None:
            self.progress.max = max(1, event.total)
            self.progress.value = event.done
        self.status.value = (f"{self.lazy_label}: computing the part in view in the "
                             f"background, {self.progress.value} of {self.progress.max} "
                             f"chunks ({blocks} network calls)")

    def on_fill_error(self, err: BaseException) -> None:
        report_error(self, "Lazy result failed", err)

    def on_fill_finished(self, done: int, outcome: str) -> None:
        """The fill ended: ``done`` chunks computed so far; ``outcome`` a key of
        `AFTER_FILL`, or "failed" (already reported)."""
        if self.closed:
            return
        self.cancel_button.enabled = False
        if outcome != "failed":
            self.status.value = (f"{self.lazy_label}: lazy, {done} chunks computed; "
                                 f"{AFTER_FILL[outcome]}")

    def _settings_used(self) -> str:
        """", threshold 0.5, seed 0.9, min size 12 px" for the viewer's model with its own
        (calibrated) settings; "" when they are not known here (a model file)."""
        summary = self.session.summary
        linked = self._links_in_3d()
        unit = "voxels" if linked else "px"
        if not self.calibrated.value:
            if self.output.value != INSTANCES:
                return f", threshold {self.threshold.value:g}"
            axes = self._image_axes()  # and the size in the layer's units, when it has them
            size = axes and physical_size(self.min_size.value, self.image.value, axes, linked)
            return (f", threshold {self.threshold.value:g}, min size {self.min_size.value} "
                    f"{unit}" + (f" (= {size})" if size else ""))
        if self.source.value == FROM_FILE or summary is None:
            return ", the model's own settings"
        if self.output.value != INSTANCES:
            return f", the model's threshold {summary.decoding.threshold:g}"
        return f", the model's settings: {summary.describe_decoding(unit == 'voxels')}"

    def _image_axes(self) -> str | None:
        """The image layer's axes for the viewer's model (None: no layer, or not told yet)."""
        if self.image.value is None:
            return None
        summary = self.session.summary
        try:
            return layer_axes(self.image.value, summary.config.in_channels if summary else None,
                              self.axes.value)
        except ValueError:
            return None

    def _links_in_3d(self) -> bool:
        """Whether this Run labels objects linked across Z (link on, instances, an image with
        a Z axis)."""
        from ..labels.options import LabelOptions

        axes, summary = self._image_axes(), self.session.summary
        volumes = summary is not None and summary.config.ndim == 3  # a 3D network always links
        return axes is not None and LabelOptions(
            instances=self.output.value == INSTANCES,
            link_planes=volumes or bool(self.link_planes.value)).links(axes.replace("C", ""))

    def cancel(self, *_: Any) -> None:
        """Cancel the running Run, folder run or lazy fill after its current step (tile
        batch, file or block)."""
        if self.fill.running:
            self.fill.cancel()
        else:
            self.session.engine.stop()
        self.cancel_button.enabled = False
        self.status.value = "cancelling after the current step…"

    def _on_error(self, title: str, err: BaseException) -> None:
        """A cancelled job is no failure: say so (files already written stay); else report."""
        from ..engine.client import EngineCancelled

        if not isinstance(err, EngineCancelled):
            report_error(self, title, err)
        elif not self.closed:
            self.status.value = ("cancelled: no layer was added or changed" if "folder" not in title
                                 else "cancelled: the files written so far stay; run again to "
                                      "do the rest")

    def _on_finish(self) -> None:
        self.session.set_busy(False)
        self.worker = None
        if self.activity is not None:
            self.activity.close()
            self.activity = None
        if not self.closed:
            self.cancel_button.enabled = False
