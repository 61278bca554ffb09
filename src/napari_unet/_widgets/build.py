"""U-Net: Build — choose the architecture, see its cost, build / load / save a model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    FileEdit,
    FloatSpinBox,
    Label,
    PushButton,
    SpinBox,
)

from ..model.config import PRECISIONS, UNetConfig
from ..model.costs import (
    count_parameters,
    flops_per_megapixel,
    halo,
    receptive_field,
    training_memory_bytes,
    volume_patch_shape,
)
from ..model.normalization import PercentileNormalization
from ..model.summary import ModelSummary
from ..version import __version__
from ._base import SessionWidget
from ._workers import report_error, report_info, start_worker


PLANES, VOLUMES = "2D (planes)", "3D (volumes)"


class BuildWidget(SessionWidget):
    """Every `UNetConfig` knob, the resulting size/cost, and Build / Load / Save."""

    def __init__(self, napari_viewer: Any):
        super().__init__(napari_viewer)
        d = UNetConfig()
        self.start_neurons = SpinBox(value=d.start_neurons, min=1, max=256, label="start filters",
                                     name="start_neurons",
                                     tooltip="Filters of the first level; doubled at every level (classic U-Net: 16).")
        self.depth = SpinBox(value=d.depth, min=1, max=6, name="depth", label="depth",
                             tooltip="Number of 2x2 poolings (classic: 4). Deeper sees more context; tiles are multiples of 2**depth.")
        self.dropout_first = FloatSpinBox(value=d.dropout_first, min=0.0, max=0.95, step=0.05,
                                          name="dropout_first", label="dropout (first)",
                                          tooltip="Dropout after the first pooling (classic: 0.25).")
        self.dropout = FloatSpinBox(value=d.dropout, min=0.0, max=0.95, step=0.05, name="dropout",
                                    label="dropout", tooltip="Dropout after later poolings and in the decoder (classic: 0.5).")
        self.batch_norm = CheckBox(value=d.batch_norm, name="batch_norm", label="batch norm",
                                   tooltip="BatchNormalization after each convolution (off in the classic U-Net).")
        self.in_channels = SpinBox(value=d.in_channels, min=1, max=16, name="in_channels",
                                   label="input channels", tooltip="1 for grey images, 3 for RGB.")
        self.n_classes = SpinBox(value=d.n_classes, min=1, max=32, name="n_classes", label="classes",
                                 tooltip="1 = objects vs background (sigmoid). 2 or more = semantic classes (softmax), 0 = background.")
        self.kernel_size = ComboBox(value=d.kernel_size, choices=[1, 3, 5, 7], name="kernel_size",
                                    label="kernel size", tooltip="Size of the square convolution kernels (classic: 3).")
        self.precision = ComboBox(value=d.precision, choices=list(PRECISIONS), name="precision",
                                  label="precision",
                                  tooltip="auto: mixed bfloat16 on GPUs with bfloat16 units (faster, float32 "
                                          "weights), float32 elsewhere. Model files always hold float32 weights.")
        self._make_volume_controls()
        self._make_normalisation_controls()
        self.patch_size = SpinBox(value=128, min=16, max=1024, step=16, name="patch_size",
                                  label="patch (for estimate)", tooltip="Training patch size used for the memory estimate.")
        self.batch_size = SpinBox(value=8, min=1, max=256, name="batch_size", label="batch (for estimate)",
                                  tooltip="Training batch size used for the memory estimate.")
        self.summary = Label(value="", name="summary", tooltip="Size and cost of the network with these settings.")
        self.build_button = PushButton(text="Build new model", name="build",
                                       tooltip="Create a fresh, untrained U-Net with these settings for Train and Run.")
        self._make_file_controls()
        self.status = Label(value=self.session.description, name="status",
                            tooltip="The model that Train and Run use in this viewer.")
        self.extend([self.network, self.z_ratio, self.start_neurons, self.depth,
                     self.dropout_first, self.dropout, self.batch_norm,
                     self.in_channels, self.n_classes, self.kernel_size, self.precision,
                     self.norm_low, self.norm_high, self.patch_size, self.batch_size, self.summary, self.build_button, self.load_path,
                     self.load_button, self.save_path, self.save_button, self.export_path,
                     self.export_button], status=self.status)
        knobs = [self.network, self.z_ratio, self.start_neurons, self.depth, self.dropout_first,
                 self.dropout, self.batch_norm,
                 self.in_channels, self.n_classes, self.kernel_size, self.precision, self.patch_size,
                 self.batch_size]
        self.wrap_labels(self.summary)
        self.remember("build", knobs + [self.norm_low, self.norm_high, self.load_path, self.save_path, self.export_path])
        for knob in knobs:
            knob.changed.connect(self.update_summary)
        self.build_button.changed.connect(self.build)
        self.load_button.changed.connect(self.load)
        self.save_button.changed.connect(self.save)
        self.export_button.changed.connect(self.export)
        self.follow(self.session.changed, self._on_model_changed)
        self.follow(self.session.busy_changed, self._on_busy)
        self.network.changed.connect(self._show_z_ratio)
        self._show_z_ratio()
        self.update_summary()

    def _make_volume_controls(self) -> None:
        self.network = ComboBox(value=PLANES, choices=[PLANES, VOLUMES], name="network",
                                label="network",
                                tooltip="2D: the classic U-Net, one plane at a time (stacks are "
                                        "labelled plane by plane, objects linked across Z on "
                                        "request). 3D: the same U-Net with 3D convolutions, "
                                        "trained and run on whole stacks (ZYX layers).")
        self.z_ratio = FloatSpinBox(value=1.0, min=1.0, max=100.0, step=0.5, name="z_ratio",
                                    label="Z step / pixel size",
                                    tooltip="How much farther apart the planes are than the pixels "
                                            "(e.g. 2 µm steps of 0.5 µm pixels: 4). Levels whose Z "
                                            "is more than twice as coarse neither pool nor "
                                            "convolve along Z, as nnU-Net does.")

    def _show_z_ratio(self, *_: Any) -> None:
        self.z_ratio.visible = self.network.value == VOLUMES

    def _make_normalisation_controls(self) -> None:
        self.norm_low = FloatSpinBox(value=PercentileNormalization.low, min=0.0, max=50.0, step=0.1,
                                     name="norm_low", label="normalise: low %",
                                     tooltip="This percentile of each image (per channel) becomes 0 before the network "
                                             "sees it (default 1). Kept in the model file: Run normalises the same way.")
        self.norm_high = FloatSpinBox(value=PercentileNormalization.high, min=50.0, max=100.0, step=0.1,
                                      name="norm_high", label="normalise: high %",
                                      tooltip="This percentile becomes 1 (default 99.8). Lower it for images with "
                                              "a few very bright spots.")

    def _make_file_controls(self) -> None:
        self.load_path = FileEdit(mode="r", filter="*.keras *.zip", name="load_path", label="model file",
                                  tooltip="A .keras model saved by napari-unet, or a bioimage.io .zip it exported.")
        self.load_button = PushButton(text="Load model", name="load", tooltip="Load the model file above for Train and Run.")
        self.save_path = FileEdit(mode="w", filter="*.keras", name="save_path", label="save as",
                                  tooltip="Where to save the current model (.keras).")
        self.save_button = PushButton(text="Save model", name="save", tooltip="Save the current model, its settings and training history.")
        self.export_path = FileEdit(mode="w", filter="*.zip", name="export_path", label="export as",
                                    tooltip="A BioImage Model Zoo package (.zip) for bioimageio.core and the "
                                            "tools built on it.")
        self.export_button = PushButton(text="Export for bioimage.io", name="export",
                                        tooltip="Write the current model as a bioimage.io package (needs "
                                                "the bioimageio.spec package in the engine's Python).")

    def config(self) -> UNetConfig:
        """The `UNetConfig` of the current settings (raises ValueError if invalid)."""
        knobs = dict(start_neurons=self.start_neurons.value, depth=self.depth.value,
                     dropout_first=float(self.dropout_first.value),
                     dropout=float(self.dropout.value), batch_norm=bool(self.batch_norm.value),
                     in_channels=self.in_channels.value, n_classes=self.n_classes.value,
                     kernel_size=int(self.kernel_size.value), precision=str(self.precision.value))
        if self.network.value == VOLUMES:
            return UNetConfig.for_spacing((float(self.z_ratio.value), 1.0, 1.0), **knobs)
        return UNetConfig(**knobs)

    def update_summary(self, *_: Any) -> None:
        try:
            c = self.config()
        except ValueError as err:
            self.summary.value = f"invalid: {err}"
            return
        p, b = self.patch_size.value, self.batch_size.value
        if c.ndim == 3:
            shape = volume_patch_shape(c, p, 10**6)
            patch, reach = "x".join(map(str, shape)), (
                f"receptive field {receptive_field(c, 'Z')} planes x {receptive_field(c)} px "
                f"(tile halo {halo(c, 'Z')} x {halo(c)}); Z left alone on "
                f"{c.z_unpooled_levels} level(s)")
        else:
            shape, patch = p, f"{p}² px"
            reach = f"receptive field {receptive_field(c)} px (tile halo {halo(c)} px)"
        mem = training_memory_bytes(c, shape, b) / 2**30
        self.summary.value = (
            f"{count_parameters(c):,} parameters\n"
            f"{flops_per_megapixel(c) / 1e9:.1f} GFLOP per {'megavoxel' if c.ndim == 3 else 'megapixel'}\n"
            f"{reach}\n"
            f"training memory ~{mem:.2f} GiB for {b}x{patch}\n"
            f"napari-unet {__version__}"
        )

    def build(self, *_: Any) -> None:
        try:
            config = self.config()
            normalization = PercentileNormalization(float(self.norm_low.value),
                                                    float(self.norm_high.value))
        except ValueError as err:
            report_error(self, "Build", err)
            return
        self._start("build", config, normalization, done=lambda summary: self.session.set_summary(
            summary, f"new untrained U-Net ({count_parameters(config):,} parameters)"), title="Build")

    def load(self, *_: Any) -> None:
        path = str(self.load_path.value or "")
        if not path or not Path(path).is_file():
            report_error(self, "Load", ValueError(f"choose an existing .keras file (got {path!r})"))
            return
        self._start("load", path, done=lambda summary: self._loaded(summary, path), title="Load")

    def _loaded(self, summary: ModelSummary, path: str) -> None:
        self._show_config(summary.config)
        self.norm_low.value = summary.normalization.low
        self.norm_high.value = summary.normalization.high
        self.session.set_summary(summary, f"loaded {Path(path).name} ({summary.epochs} epochs "
                                          "trained)")

    def save(self, *_: Any) -> None:
        self._write_model(self.save_path.value, ".keras", "save", "Save", "saved")

    def export(self, *_: Any) -> None:
        self._write_model(self.export_path.value, ".zip", "export_bioimageio", "Export", "exported")

    def _write_model(self, value: Any, suffix: str, method: str, title: str, verb: str) -> None:
        """Save or export the current model to the file ``value`` (ending in ``suffix``)."""
        if not self.session.has_model:
            report_error(self, title, ValueError("there is no model yet: build, load or train one first"))
            return
        path = str(value or "")
        if not path.endswith(suffix):
            report_error(self, title, ValueError(f"choose a file name ending in {suffix} (got {path!r})"))
            return
        self._start(method, path, done=lambda p: report_info(self, f"{verb} {p}"), title=title)

    def _show_config(self, config: UNetConfig) -> None:
        for key, value in config.to_dict().items():
            if key not in ("ndim", "z_unpooled_levels"):
                getattr(self, key).value = value
        self.network.value = VOLUMES if config.ndim == 3 else PLANES
        levels = config.z_unpooled_levels  # a ratio that leaves as many levels unpooled
        self.z_ratio.value = 1.5 * 2**levels if levels else 1.0

    def _start(self, method: str, *args, done, title: str) -> None:
        """Run `EngineClient` ``method`` with ``args`` in a worker; ``done`` gets its result."""
        if self.wait_for_engine(title, lambda: self._start(method, *args, done=done, title=title)):
            return
        self.last_error = ""
        self._set_enabled(False)
        self.session.set_busy(True, title.lower().rstrip('e') + "ing")
        self.status.value = f"{title}… (the first time also starts TensorFlow)"
        self.worker = start_worker(getattr(self.session.engine, method), *args, on_return=done,
                     on_error=lambda err: report_error(self, title, err),
                     on_finish=self._on_finish)

    def _on_finish(self) -> None:
        self.worker = None
        self.session.set_busy(False)

    def _set_enabled(self, enabled: bool) -> None:
        for button in (self.build_button, self.load_button, self.save_button, self.export_button):
            button.enabled = enabled

    def _on_model_changed(self, description: str) -> None:
        self.status.value = description

    def _on_busy(self, busy: bool) -> None:
        self._set_enabled(not self.session.blocked)
