"""Keras' own ``fit`` loop, driven as a generator of `TrainProgress`.

``fit`` keeps the model's state on the device between steps (on JAX it syncs
the weights back only at the end of each epoch) and dispatches step after step
without waiting for the previous one; a hand-written ``train_on_batch`` loop
synced after every batch and trained at 0.57x ``fit``'s speed on an H100.
To keep training a generator that yields progress (what the engine process
and `napari_unet.training.job.train` drain), ``fit`` runs on a helper thread and
its callback hands batch and epoch logs back through a queue. The callback
also keeps the weights of the best epoch, notices a non-finite loss, and asks
``fit`` to stop when the caller's ``should_stop`` (or the time limit) says so.
`fit` is the training job's step: compile, then `fit_events` on the sampler's batches.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import queue
import threading
import time
from typing import Any, Callable, Iterator, NamedTuple

import numpy as np

from ..common.progress import TrainProgress

__all__ = ["FitOutcome", "fit", "fit_events", "Deadline", "batches_per_call", "patience_epochs"]


class FitOutcome(NamedTuple):
    history: dict[str, list[float]]
    best_epoch: int  # 0 when no epoch ended with a finite loss
    stopped: bool
    diverged: str  # "" or what went non-finite, e.g. "the loss became nan at epoch 2, batch 3"
    early_stopped: bool = False  # no better epoch for `patience` epochs
    time_limited: bool = False  # the time budget, not the caller, stopped it
    batches: int = 0  # batches trained (a stopped epoch counts the batches it ran)


class Deadline:
    """A ``should_stop`` that also answers True once ``budget`` seconds (None: never) have
    passed since it was first asked, which `fit_events` does before the second call of
    the compiled step: the time limit counts training, not the engine's start or the
    network's compilation (both happen before or during the first call). ``reached``
    says whether it ended training."""

    def __init__(self, should_stop: Callable[[], bool] | None, budget: float | None):
        self.should_stop, self.budget = should_stop, budget
        self.started: float | None = None
        self.reached = False

    def elapsed(self) -> float:
        """Seconds since the clock started (0 before the second call of the compiled step)."""
        return 0.0 if self.started is None else time.perf_counter() - self.started

    def __call__(self) -> bool:
        now = time.perf_counter()
        if self.started is None:
            self.started = now
        if self.budget is not None and now - self.started > self.budget:
            self.reached = True
            return True
        return self.should_stop is not None and bool(self.should_stop())


def fit(unet: Any, settings: Any, held_out: Any, schedule: tuple[int, int],
        should_stop: Callable[[], bool] | None, parallel: Any, weights: list[float] | None,
        side_job: Any = None):
    """Compile ``unet`` (in the data-parallel scope, if any; with the encoder frozen when
    ``settings`` ask) and run `fit_events` on the batches of ``held_out.sampler`` made
    ahead by `patch_workers` threads, validating on ``held_out.validation``; returns the
    `FitOutcome`. ``schedule`` is (epochs, batches per epoch); ``settings.time_budget``
    ends training as `Deadline` says. The encoder is trainable again afterwards."""
    from .network import compile_network, freeze_encoder, trained_network

    km = trained_network(unet.keras_model, parallel)
    frozen = freeze_encoder(km, settings.freeze_encoder)
    with parallel.scope() if parallel else contextlib.nullcontext():
        compile_network(unet, settings, weights, batches_per_call(schedule[1], parallel), km)
    sync = _weights_into(unet.keras_model, km)
    if side_job is not None and km is not unet.keras_model:
        side_job = _AfterSync(side_job, sync)
    batches = held_out.sampler.stream(workers=patch_workers())
    deadline = Deadline(should_stop, settings.time_budget)
    try:
        outcome = yield from fit_events(km, batches, held_out.validation,
                                        *schedule, settings.batch_size, deadline,
                                        parallel.scope if parallel else None, settings.patience,
                                        side_job, clock=deadline.elapsed)
    finally:
        batches.close()
        for layer in frozen:
            layer.trainable = True
        sync()
    return outcome._replace(time_limited=deadline.reached)


def _weights_into(network: Any, trained: Any) -> Callable[[], None]:
    """What copies the weights of ``trained`` (the network's twin) into ``network``."""
    if trained is network:
        return lambda: None
    from ..backend.channels_first import copy_weights

    return functools.partial(copy_weights, trained, network)


class _AfterSync:
    """A side job (the live preview) run after ``sync()``: the network it predicts with
    gets the weights of the twin being trained."""

    def __init__(self, job: Any, sync: Callable[[], None]):
        self.job, self.sync = job, sync

    def due(self) -> bool:
        return self.job.due()

    def run(self, epoch: int, batch: int) -> Any:
        self.sync()
        return self.job.run(epoch, batch)


# most batches one call of TensorFlow's compiled training step runs: the per-call cost
# (tf.data, the function call, the callbacks) was ~6 % of the default U-Net's step on a
# 2-core CPU (docs/benchmarks.md, bench_core); on JAX Keras unrolls the steps into one
# program (compile time x4), and on PyTorch it loops in Python (nothing to gain)
MAX_BATCHES_PER_CALL = 4


def batches_per_call(steps: int, parallel: Any = None) -> int:
    """Batches each call of the compiled training step runs (Keras' ``steps_per_execution``):
    on TensorFlow on one device the largest divisor of ``steps`` (batches per epoch) up to
    `MAX_BATCHES_PER_CALL`, so every epoch ends on a call's last batch; else 1."""
    from ..backend.runtime import backend_name

    if parallel is not None or backend_name() != "tensorflow":
        return 1
    return max(k for k in range(1, MAX_BATCHES_PER_CALL + 1) if steps % k == 0)


def _compiled_per_call(km: Any, steps: int) -> int:
    """The batches per call ``km`` was compiled for; ``ValueError`` unless they divide the
    ``steps`` batches of an epoch (Keras would run whole calls past the epoch's end)."""
    per_call = getattr(km, "steps_per_execution", 1) or 1
    if steps % per_call:
        raise ValueError(f"The network was compiled to train {per_call} batches per call, which "
                         f"does not divide the {steps} batches of an epoch; compile it with "
                         f"steps_per_execution={batches_per_call(steps)} (batches_per_call).")
    return per_call


def patch_workers() -> int:
    """Threads that cut training patches ahead of the device: a quarter of the cores, 1 to 4."""
    return max(1, min(4, (os.cpu_count() or 1) // 4))


def fit_events(km: Any, batches: Iterator[tuple[np.ndarray, np.ndarray]],
               validation: tuple | None, epochs: int, steps: int, batch_size: int,
               should_stop: Callable[[], bool] | None, scope: Callable[[], Any] | None = None,
               patience: int | None = None, side_job: Any = None,
               clock: Callable[[], float] | None = None):
    """Train the compiled ``km`` on ``batches`` for ``epochs`` x ``steps`` batches.

    ``batches`` yields ``(x, y)`` without end; ``validation`` is ``(x_val,
    y_val)`` or None. Yields a `TrainProgress` per call of the compiled step (``km``'s
    ``steps_per_execution`` batches, see `batches_per_call`; its ``batch`` counts the
    batches done in the epoch, its logs are those after the call's last batch) and per
    epoch; returns a `FitOutcome`. When ``should_stop()`` turns true, or the loss stops
    being finite, training ends after the call in flight (and its epoch's
    validation). ``should_stop`` is called on the training thread before every
    call but the first, so it must be safe to call from another thread (e.g.
    ``threading.Event.is_set``); when it answers True, the call then starting is
    the last. The weights of the best finite epoch (highest ``val_iou``, else
    ``iou``; the lower loss breaks ties) are left in ``km``. With ``patience``,
    training ends after `patience_epochs` epochs without a better epoch (``patience``, at
    least `MIN_PATIENCE_BATCHES` batches) and the learning rate is halved after half as
    many (at least 2); neither before `MIN_BATCHES_BEFORE_PLATEAU` batches. An exception inside
    ``fit`` is raised here; closing the generator stops ``fit`` and waits for its
    thread. ``scope``: the context (a data-parallel distribution) ``fit`` runs in.
    ``side_job`` (e.g. a `napari_unet.training.preview.PreviewJob`) runs on the training
    thread before a batch when ``side_job.due()``; ``side_job.run(epoch, batch)`` is yielded.
    ``clock()`` gives the seconds each event reports (`TrainProgress.seconds`).
    """
    events: queue.Queue = queue.Queue()
    record = _Record(events, epochs, steps, validation is not None, should_stop, patience,
                     side_job, clock, _compiled_per_call(km, steps))
    callbacks = [_relay_class()(record)] + _plateau(record.monitor, patience, steps)

    def work() -> None:
        try:
            with scope() if scope is not None else contextlib.nullcontext():
                km.fit(batches, epochs=epochs, steps_per_epoch=steps, validation_data=validation,
                       validation_batch_size=batch_size, callbacks=callbacks, shuffle=False,
                       verbose=0)
            events.put(("done", None))
        except BaseException as err:  # noqa: BLE001 - handed to the generator's thread
            events.put(("error", err))

    thread = threading.Thread(target=work, name="napari-unet-fit", daemon=True)
    thread.start()
    try:
        while True:
            kind, payload = events.get()
            if kind == "error":
                raise payload
            if kind == "done":
                break
            yield payload
    finally:
        record.halt = True
        thread.join()
    if record.best_weights is not None:
        km.set_weights(record.best_weights)
    return FitOutcome(record.history, record.best_epoch, record.stopped, record.diverged,
                      record.early_stopped, batches=record.trained)


class _Record:
    """What the training callback keeps: batch logs passed on in order, the history of
    finished epochs, the best weights, and why training must halt (plain Python, no Keras).

    ``events`` receives ``("batch" | "epoch", TrainProgress)``; ``halt`` turns true when
    the caller stops or the loss is no longer finite, and the callback then stops ``fit``.
    Keras reports batch ends once per call of ``per_call`` batches, at the call's last.
    """

    def __init__(self, events: queue.Queue, epochs: int, steps: int, validating: bool,
                 should_stop: Callable[[], bool] | None = None, patience: int | None = None,
                 side_job: Any = None, clock: Callable[[], float] | None = None,
                 per_call: int = 1):
        self.events, self.epochs, self.steps, self.per_call = events, epochs, steps, per_call
        self.clock = clock or (lambda: 0.0)
        self.should_stop, self.stopped, self.patience = should_stop, False, patience
        self.monitor = "val_iou" if validating else "iou"
        self.history: dict[str, list[float]] = {"loss": [], "iou": []}
        if validating:
            self.history.update(val_loss=[], val_iou=[])
        self.best, self.best_weights, self.best_epoch = (-math.inf, math.inf), None, 0
        self.early_stopped = False
        self.halt, self.diverged, self.epoch, self.batch = False, "", 1, 0
        self.trained = 0  # batches reported done, over all epochs
        self.lock, self.waiting = threading.Lock(), {}
        self.side_job = side_job

    def epoch_begins(self, epoch: int) -> None:
        self.epoch, self.batch, self.waiting = epoch + 1, 0, {}

    def batch_begins(self, first: bool) -> None:
        """Before every call of the compiled step but the ``first`` of the training, ask
        ``should_stop``; the call about to start is then the last (Keras cannot skip it)."""
        if self.should_stop is not None and not first and not self.stopped:
            self.stopped = bool(self.should_stop())
            self.halt = self.halt or self.stopped

    def batch_ends(self, batch: int, logs: Any) -> None:
        # on Keras' callback threads batch ends can finish out of order: pass them on in order
        with self.lock:
            self.waiting[batch] = {key: float(logs[key]) for key in ("loss", "iou")}
            while self.batch + self.per_call - 1 in self.waiting:
                last = self.batch + self.per_call - 1
                self._batch_done(last, self.waiting.pop(last))
                self.batch += self.per_call
                self.trained += self.per_call

    def _batch_done(self, batch: int, logs: dict[str, float]) -> None:
        if self.diverged:
            return
        if not math.isfinite(logs["loss"]):
            where = (f"batch {batch + 1}" if self.per_call == 1  # a call's logs: its last batch
                     else f"batches {batch + 2 - self.per_call}-{batch + 1}")
            self.diverged = f"the loss became {logs['loss']} at epoch {self.epoch}, {where}"
            self.halt = True
            return
        self.events.put(("batch", TrainProgress(self.epoch, self.epochs, batch + 1, self.steps,
                                                "batch", logs, self.clock())))

    def epoch_ends(self, epoch: int, logs: Any, get_weights: Callable[[], list]) -> None:
        """Record a finished epoch; its weights (``get_weights()``) are kept when it is the best
        so far."""
        if self.diverged:
            return
        logs = {key: float(logs[key]) for key in self.history}
        loss = logs["val_loss" if self.monitor == "val_iou" else "loss"]
        score = (logs[self.monitor], -loss)
        weights = get_weights()  # checked every epoch: a NaN may hide behind a finite loss
        if not (math.isfinite(loss) and math.isfinite(logs[self.monitor])) or not all(
                np.isfinite(w).all() for w in weights):
            self.diverged = f"the loss or the weights became non-finite at epoch {epoch + 1}"
            self.halt = True
            return
        for key, value in logs.items():
            self.history[key].append(value)
        if score > self.best:
            self.best, self.best_weights, self.best_epoch = score, weights, epoch + 1
        elif (self.patience
              and epoch + 1 - self.best_epoch >= patience_epochs(self.patience, self.steps)
              and _past_minimum(epoch, self.steps)):
            self.early_stopped = self.halt = True
        self.events.put(("epoch", TrainProgress(epoch + 1, self.epochs, self.batch, self.steps,
                                                "epoch", logs, self.clock())))


# batches trained before a plateau may halve the learning rate or end training: a 3D
# network's epochs are few batches (10 on three small stacks), and one that starts slowly
# sat at its first validation IoU for 90 batches, then was stopped (docs/benchmarks.md)
MIN_BATCHES_BEFORE_PLATEAU = 300


# fewest batches without a better epoch that end training (half of them halve the learning
# rate), whatever the patience in epochs: a 3D network's 10-batch epochs made a patience of 8
# epochs 80 batches, while its validation IoU on two held-out volumes moves +-0.05 between
# epochs; it was stopped still improving (docs/benchmarks.md, Volumes, session 15)
MIN_PATIENCE_BATCHES = 200


def patience_epochs(patience: int, steps: int) -> int:
    """Epochs without a better one that end training: ``patience``, or for epochs of few
    ``steps`` (batches) enough of them to make `MIN_PATIENCE_BATCHES` batches."""
    return max(int(patience), math.ceil(MIN_PATIENCE_BATCHES / max(1, steps)))


def _past_minimum(epoch: int, steps: int) -> bool:
    """Whether epoch ``epoch`` (from 0) of ``steps`` batches ends at least
    `MIN_BATCHES_BEFORE_PLATEAU` batches into training."""
    return (epoch + 1) * steps >= MIN_BATCHES_BEFORE_PLATEAU


def _plateau(monitor: str, patience: int | None, steps: int) -> list:
    """With ``patience``: a callback halving the learning rate when ``monitor`` stalls,
    from the epoch that ends `MIN_BATCHES_BEFORE_PLATEAU` batches (``steps`` per epoch) on."""
    if not patience:
        return []
    from ..backend.runtime import load_keras

    class Plateau(load_keras().callbacks.ReduceLROnPlateau):
        def on_epoch_end(self, epoch, logs=None):
            if _past_minimum(epoch, steps):
                super().on_epoch_end(epoch, logs)

    return [Plateau(monitor=monitor, mode="max", factor=0.5,
                    patience=max(2, patience_epochs(patience, steps) // 2),
                    min_delta=1e-4, verbose=0)]


@functools.cache
def _relay_class() -> type:
    """A ``keras.callbacks.Callback`` that feeds a `_Record` (made once Keras is loaded)."""
    from ..backend.runtime import load_keras

    class Relay(load_keras().callbacks.Callback):
        # batch ends may run on Keras' callback threads, so the training thread never waits
        # for a batch's logs to come back from the device
        async_safe = True

        def __init__(self, record: _Record):
            super().__init__()
            self.record = record

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.record.epoch_begins(epoch)

        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            # on the training thread, in step: asking here stops at the same batch on every
            # backend (batch ends may be reported late, on Keras' callback threads)
            self.record.batch_begins(first=(self.record.epoch, batch) == (1, 0))
            if self.record.halt:
                self._model.stop_training = True  # not self.model: see on_train_batch_end
            elif self.record.side_job is not None and self.record.side_job.due():
                self.model  # noqa: B018 - on JAX this brings the device state into the variables
                self.record.events.put(("side", self.record.side_job.run(self.record.epoch,
                                                                         batch + 1)))

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            # may run on a Keras callback thread while the next step runs: it must not touch
            # the model (on JAX, `self.model` syncs the device state into the variables,
            # racing the training thread, which has already donated those buffers)
            self.record.batch_ends(batch, logs)

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.record.epoch_ends(epoch, logs, self.model.get_weights)
            if self.record.halt:
                self.model.stop_training = True

    return Relay
