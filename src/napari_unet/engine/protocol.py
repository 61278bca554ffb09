"""`Engine`: the operations on the model that lives in the engine process.

`napari_unet.engine.client.EngineClient` (the viewer's side) and
`napari_unet.engine.server.EngineState` (the engine's) both follow this protocol,
method by method and parameter by parameter (a test compares them); the widgets' jobs
take an ``Engine``. Long jobs are generators: they yield progress events and return
their result. Every argument and result pickles across the process boundary.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generator, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from ..common.progress import PredictProgress, TrainProgress
    from ..labels.options import LabelOptions
    from ..model.config import UNetConfig
    from ..model.normalization import PercentileNormalization
    from ..model.summary import ModelSummary
    from ..prediction.folders import FileResult
    from ..training.request import TrainRequest

__all__ = ["Engine"]


@runtime_checkable
class Engine(Protocol):
    """What can be done with the engine's model (see the module docstring).

    ``model_path`` (where a method takes one): a model file to use instead of the
    engine's model (loaded once and kept while it is asked for again).
    """

    def device(self) -> str:
        """One line on the backend and device the engine computes on."""

    def summary(self) -> ModelSummary | None:
        """The engine's model's summary, or None when it has none (starts no Keras)."""

    def model_summary(self, model_path: str | None = None) -> ModelSummary:
        """The summary of the engine's model, or of the model file ``model_path``."""

    def build(self, config: UNetConfig,
              normalization: PercentileNormalization | None = None) -> ModelSummary:
        """Make a new, untrained U-Net from ``config`` the engine's model (normalising
        images with ``normalization``; None: the default percentiles 1 and 99.8)."""

    def load(self, path: str) -> ModelSummary:
        """Make the model file (or bioimage.io package) ``path`` the engine's model."""

    def save(self, path: str) -> str:
        """Write the model to ``path`` atomically; returns the path written."""

    def export_bioimageio(self, path: str, name: str | None = None) -> str:
        """Write the model as a bioimage.io package at ``path``; returns the path."""

    def train(self, request: TrainRequest) -> Generator[TrainProgress | Any, None, ModelSummary]:
        """Train the engine's model further (a new one from ``request.new_config`` when it
        has none), yielding `TrainProgress` and `TrainPreview`s; returns the summary.
        Stopping ends it after the batches in progress, keeping the best weights."""

    def segment(self, image: Any, axes: str | None, options: LabelOptions, *,
                tile_size: int | None = None, probabilities: bool = False,
                model_path: str | None = None
                ) -> Generator[PredictProgress, None, tuple[Any, Any, str]]:
        """Labels of ``image``; returns ``(labels, probabilities or None, axes used)``."""

    def uncertainty(self, image: Any, axes: str | None, passes: int, *,
                    tile_size: int | None = None, model_path: str | None = None
                    ) -> Generator[PredictProgress, None, tuple[Any, Any]]:
        """Monte-Carlo dropout maps of ``image``; returns ``(entropy, spread)``."""

    def predict_folder(self, in_dir: str, out_dir: str, options: LabelOptions, *,
                       tile_size: int | None = None, model_path: str | None = None
                       ) -> Generator[FileResult, None, list[FileResult]]:
        """Labels of every image of ``in_dir`` written to ``out_dir``; yields a
        `FileResult` per file, returns them all."""

    def predict_block(self, block: Any, axes: str, stats: Any, *, model_path: str | None = None,
                      tile_size: int | None = None) -> np.ndarray:
        """Probabilities of one block of a lazy array (see `napari_unet.prediction.lazy`)."""

    def uncertainty_block(self, block: Any, axes: str, stats: Any, origin: Any, passes: int, *,
                          model_path: str | None = None,
                          tile_size: int | None = None) -> np.ndarray:
        """Entropy and spread of one block of a lazy array, stacked on a last axis."""
