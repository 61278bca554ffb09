"""`TrainRequest`: one training as a front end asks for it, in one picklable value.

The Train widget sends it to the engine process, which trains its model with it
(`napari_unet.training.job.iter_train_request`); its image and mask folders, if any, are
read there, not in the viewer.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Sequence

from ..model.config import UNetConfig
from .settings import TrainSettings

__all__ = ["TrainRequest"]


@dataclass(frozen=True)
class TrainRequest:
    """What to train on and how.

    ``images`` and ``labels``: arrays (one per image), or empty when ``folders`` gives
    ``(images folder, masks folder)`` of files matched by name. ``axes``: one axes
    string for all images, or one per image (None: guessed). ``names``: one per image,
    for messages (file names for folders). ``settings``: a `TrainSettings`.
    ``new_config``: the `UNetConfig` of the network to build when there is no model to
    train on (its input channels follow the images' channel axis, if ``axes`` names
    one). ``preview``: a `napari_unet.training.preview.Preview` or None.
    ``class_names``: one per class, background first, or None. ``spacing``: the
    images' pixel sizes along Z, Y, X, one mapping for all or a list with one per image
    (None: 1; see `napari_unet.training.job.iter_train`).
    """

    images: Sequence[Any] = ()
    labels: Sequence[Any] = ()
    axes: Sequence[str | None] | str | None = None
    names: Sequence[str] | None = None
    folders: tuple[str, str] | None = None
    settings: TrainSettings = field(default_factory=TrainSettings)
    new_config: UNetConfig | None = None
    preview: Any = None
    class_names: Sequence[str] | None = None
    spacing: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.settings, TrainSettings):
            raise ValueError(f"settings must be a TrainSettings; got "
                             f"{type(self.settings).__name__}.")
        if self.new_config is not None and not isinstance(self.new_config, UNetConfig):
            raise ValueError(f"new_config must be a UNetConfig or None; got "
                             f"{type(self.new_config).__name__}.")
        if self.folders is not None and (len(self.folders) != 2 or self.images or self.labels):
            raise ValueError("give either image and label arrays or folders=(images folder, "
                             "masks folder), not both.")

    def resolved(self) -> TrainRequest:
        """This request with its folders read (`napari_unet.io.images.read_training_folder`:
        files read one at a time when training prepares them) and a new network's input
        channels taken from the first image's channel axis."""
        request = self
        if self.folders is not None:
            from ..io.images import read_training_folder

            images, masks, names = read_training_folder(*self.folders,
                                                        ("images folder", "masks folder"))
            request = replace(self, images=images, labels=masks, names=names, folders=None,
                              spacing=self.spacing if self.spacing is not None
                              else [image.spacing for image in images])
        axes = request.axes if isinstance(request.axes, str) or request.axes is None \
            else request.axes[0]
        if request.new_config is not None and axes and "C" in axes.upper() and request.images:
            from ..common.arrays import check_axes

            shape = request.images[0].shape
            channels = shape[check_axes(axes, shape).index("C")]
            request = replace(request, new_config=replace(request.new_config,
                                                          in_channels=channels))
        return request
