"""The network a training round trains: a given model, or a new one whose target the
labels choose; on one device or data-parallel; compiled with Adam and the masked loss,
with its encoder frozen for fine-tuning."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any, Sequence

from ..model.config import UNetConfig
from ..model.network import build_unet
from ..model.unet import UNetModel
from .data import choose_target
from .settings import TrainSettings

__all__ = ["network_to_train", "parallel_plan", "compile_network", "freeze_encoder"]


def network_to_train(model: Any, parallel: Any, settings: TrainSettings, labels: list,
                     class_names: Sequence[str] | None = None) -> UNetModel:
    """The `UNetModel` to train (with the user's ``class_names``, if given).

    A trained `UNetModel` goes on (its target must agree with ``settings.target``). A
    `UNetConfig` or None gives a new network whose target `choose_target` picks from
    the labels (a ``"boundary"`` network has 3 outputs); so does an untrained
    foreground or classes `UNetModel` whose target the labels would not choose (e.g.
    the Build widget's default network, given instance labels), else it trains in place. With a data-parallel plan
    the network is (re)built in the plan's scope, so its weights are mirrored on every
    device.
    """
    scope = parallel.scope() if parallel is not None else contextlib.nullcontext()
    if isinstance(model, UNetModel):
        if settings.target not in ("auto", model.target):
            raise ValueError(f"This model was trained for target {model.target!r}; it cannot "
                             f"continue as {settings.target!r}. Build a new model instead.")
        if parallel is not None:
            weights = model.keras_model.get_weights()
            with scope:
                model.keras_model = build_unet(model.config)
            model.keras_model.set_weights(weights)
        return _name_classes(model, class_names)
    if model is None or isinstance(model, UNetConfig):
        config = model or UNetConfig()
        target = choose_target(settings.target, config.n_classes, settings.label_mode, labels)
        if target == "boundary":
            config = replace(config, n_classes=3)
        with scope:
            return _name_classes(UNetModel.new(config, target=target), class_names)
    raise ValueError(
        f"model must be a UNetConfig (a new network), a UNetModel (continue training) "
        f"or None (the default network); got {type(model).__name__}."
    )


def _name_classes(unet: UNetModel, class_names: Sequence[str] | None) -> UNetModel:
    """``unet`` with the user's class names (``ValueError`` if their number differs)."""
    if class_names is None:
        return unet
    names = [str(n).strip() for n in class_names]
    wanted = len(unet.class_names)
    if len(names) != wanted or not all(names) or len(set(names)) != len(names):
        raise ValueError(f"class_names must be {wanted} different, non-empty names (background "
                         f"first) for this {unet.target} network; got {list(class_names)!r}.")
    if unet.target == "boundary":
        raise ValueError("a boundary network's classes are background / interior / boundary; "
                         "class_names are for foreground and classes networks.")
    unet.update(class_names=tuple(names))
    return unet


def parallel_plan(settings: TrainSettings) -> Any:
    """The data-parallel plan (None: one device); the batch must split evenly over it."""
    from ..backend.parallel import data_parallel

    plan = data_parallel(settings.data_parallel)
    if plan is not None and settings.batch_size % plan.devices:
        raise ValueError(f"batch_size must be a multiple of the {plan.devices} devices that "
                         f"share each batch; got {settings.batch_size}. Use "
                         f"{plan.devices * max(1, round(settings.batch_size / plan.devices))}, "
                         "or data_parallel=False.")
    return plan


def trained_network(km: Any, parallel: Any = None) -> Any:
    """The Keras model training runs: ``km`` itself, or on PyTorch on one device its
    channels-first twin holding ``km``'s weights (`napari_unet.backend.channels_first`;
    copy them back with ``copy_weights``), which trains faster with the same result."""
    from ..backend.runtime import backend_name

    if parallel is not None or backend_name() != "torch":
        return km
    from ..backend.channels_first import copy_weights, training_twin

    twin = training_twin(km)
    if twin is None:
        return km
    copy_weights(km, twin)
    return twin


def training_optimizer(km: Any) -> Any:
    """The optimizer ``km`` trains with (its PyTorch twin's, see `trained_network`), or None
    before its first training."""
    from ..backend.channels_first import kept_training_twin

    return getattr(kept_training_twin(km) or km, "optimizer", None)


def compile_network(unet: UNetModel, settings: TrainSettings,
                    weights: list[float] | None, steps_per_execution: int = 1,
                    model: Any = None) -> None:
    """Compile ``model`` (default: the network; else `trained_network`'s twin of it) with
    Adam (the one it trained with, when it did, so a second round continues its moments),
    the masked loss (class ``weights``, if any) and the masked IoU metric; each call of
    the compiled step trains ``steps_per_execution`` batches
    (`napari_unet.training.fit_loop.batches_per_call`)."""
    from ..backend.devices import resolve_precision
    from ..backend.runtime import load_keras, make_adam
    from .losses import MaskedIoU, make_loss

    model = unet.keras_model if model is None else model
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and getattr(optimizer, "built", False):
        optimizer.learning_rate = settings.learning_rate  # continue: Adam's moments are kept
    else:
        optimizer = make_adam(settings.learning_rate)
        if resolve_precision(unet.config.precision) == "mixed_float16":  # float16 grads underflow
            optimizer = load_keras().optimizers.LossScaleOptimizer(optimizer)
    model.compile(optimizer=optimizer,
                  loss=make_loss(settings.loss, weights),
                  metrics=[MaskedIoU(threshold=unet.decoding.threshold)],
                  steps_per_execution=steps_per_execution)


def freeze_encoder(km: Any, freeze: bool) -> list:
    """Make the encoder and bottleneck layers untrainable when ``freeze``; returns them."""
    if not freeze:
        return []
    layers = [layer for layer in _flat_layers(km) if layer.name.startswith(("enc", "bottleneck"))
              and layer.trainable and layer.weights]
    for layer in layers:
        layer.trainable = False
    return layers


def _flat_layers(km: Any) -> list:
    """``km``'s layers, those of a nested model (a `trained_network` twin's) in its place."""
    return [inner for layer in km.layers
            for inner in (_flat_layers(layer) if hasattr(layer, "layers") else [layer])]
