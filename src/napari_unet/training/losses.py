"""Masked losses and metrics: pixels whose target is ``IGNORE`` (-1) do not count.

Targets are float ``(B, H, W, 1)`` class indices (0 = background) or -1, or
``(B, H, W, 2)`` with a per-pixel weight in the second channel that the
cross-entropy adds to the class weight (`napari_unet.labels.targets.border_weights`).
Predictions are sigmoid ``(B, H, W, 1)`` (binary) or softmax ``(B, H, W, K)``.
Importing this module imports Keras; it is only imported when training starts.
"""

from __future__ import annotations

from ..backend.runtime import load_keras

keras = load_keras()
ops = keras.ops

_EPS = 1e-7


def _split_target(y_true):
    """``(classes (B,H,W,1), extra pixel weights (B,H,W,1) or None)`` of a target (a 3D
    network's: (B,D,H,W,1))."""
    if y_true.shape[-1] == 2:
        return y_true[..., :1], y_true[..., 1:]
    return y_true, None


def _mask_and_onehot(y_true, y_pred):
    """Return (mask (B,H,W,1), one-hot/binary target shaped like y_pred); a weight channel
    of ``y_true`` is left out."""
    y_true = _split_target(y_true)[0]
    mask = ops.cast(ops.greater_equal(y_true, 0.0), "float32")
    labels = ops.maximum(y_true, 0.0)
    n = y_pred.shape[-1]
    if n == 1:
        return mask, labels
    onehot = ops.one_hot(ops.cast(labels[..., 0], "int32"), n)
    return mask, onehot


def _per_sample(value, mask):
    """Repeat a batch-level value per sample, so Keras' mean over the batch returns it.

    The loss is a mean over all annotated pixels of the batch (not a mean of
    per-image means), so images with few scribbled pixels do not dominate.
    """
    return ops.ones_like(ops.sum(mask, axis=tuple(range(1, len(mask.shape))))) * value


class _MaskedLoss(keras.losses.Loss):
    """A loss named ``default_name`` unless a name is given."""

    default_name = "masked_loss"

    def __init__(self, name=None, **kwargs):
        super().__init__(name=name or self.default_name, **kwargs)


@keras.saving.register_keras_serializable(package="napari_unet")
class MaskedCrossentropy(_MaskedLoss):
    """Binary (sigmoid) or categorical (softmax) cross-entropy over annotated pixels only.

    ``class_weights`` (optional, one per class, 2 for a sigmoid output) weighs
    each pixel by its target class; a weight channel in the target adds to that
    (per pixel). The result is the weighted mean, so rare classes (the boundary
    band) and heavy pixels count as much as their weight says.
    """

    default_name = "masked_crossentropy"

    def __init__(self, class_weights=None, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]

    def call(self, y_true, y_pred):
        mask, target = _mask_and_onehot(y_true, y_pred)
        p = ops.clip(y_pred, _EPS, 1.0 - _EPS)
        if y_pred.shape[-1] == 1:
            ce = -(target * ops.log(p) + (1.0 - target) * ops.log(1.0 - p))
        else:
            ce = -ops.sum(target * ops.log(p), axis=-1, keepdims=True)
        extra = _split_target(y_true)[1]
        if self.class_weights is not None:
            mask = mask * (self._pixel_weights(target, ce.dtype)
                           + (0.0 if extra is None else extra))
        elif extra is not None:
            mask = mask * (1.0 + extra)
        total = ops.sum(ce * mask) / ops.maximum(ops.sum(mask), _EPS)
        return _per_sample(total, mask)

    def _pixel_weights(self, target, dtype):
        """(B, H, W, 1) weight of each pixel's target class (``target``: binary or one-hot)."""
        weights = ops.convert_to_tensor(self.class_weights, dtype=dtype)
        if target.shape[-1] == 1:
            return weights[0] + (weights[1] - weights[0]) * target
        return ops.sum(target * weights, axis=-1, keepdims=True)

    def get_config(self):
        return {**super().get_config(), "class_weights": self.class_weights}


@keras.saving.register_keras_serializable(package="napari_unet")
class MaskedDice(_MaskedLoss):
    """1 - soft Dice of the foreground (mean over foreground classes), annotated pixels only."""

    default_name = "masked_dice"

    def call(self, y_true, y_pred):
        mask, target = _mask_and_onehot(y_true, y_pred)
        if y_pred.shape[-1] > 1:
            target, y_pred = target[..., 1:], y_pred[..., 1:]
        spatial = tuple(range(len(y_pred.shape) - 1))  # batch and spatial axes: per class
        inter = ops.sum(target * y_pred * mask, axis=spatial)
        denom = ops.sum((target + y_pred) * mask, axis=spatial)
        dice = ops.mean((2.0 * inter + 1.0) / (denom + 1.0))
        return _per_sample(1.0 - dice, mask)


@keras.saving.register_keras_serializable(package="napari_unet")
class MaskedCrossentropyDice(keras.losses.Loss):
    """Masked cross-entropy plus masked soft Dice."""

    def __init__(self, class_weights=None, name="masked_crossentropy_dice", **kwargs):
        super().__init__(name=name, **kwargs)
        self.class_weights = class_weights
        self._ce = MaskedCrossentropy(class_weights)
        self._dice = MaskedDice()

    def call(self, y_true, y_pred):
        return self._ce.call(y_true, y_pred) + self._dice.call(y_true, y_pred)

    def get_config(self):
        return {**super().get_config(), "class_weights": self.class_weights}


@keras.saving.register_keras_serializable(package="napari_unet")
class MaskedIoU(keras.metrics.Metric):
    """Foreground intersection-over-union over annotated pixels, accumulated over an epoch.

    Binary: prediction > ``threshold``. Multi-class: argmax, mean IoU of classes 1..K-1.
    """

    def __init__(self, threshold: float = 0.5, name="iou", **kwargs):
        super().__init__(name=name, **kwargs)
        self.threshold = threshold
        self.intersection = self.add_variable(shape=(), initializer="zeros", name="intersection")
        self.union = self.add_variable(shape=(), initializer="zeros", name="union")

    def update_state(self, y_true, y_pred, sample_weight=None):
        mask, target = _mask_and_onehot(y_true, y_pred)
        if y_pred.shape[-1] == 1:
            pred = ops.cast(ops.greater(y_pred, self.threshold), "float32")
        else:
            pred = ops.one_hot(ops.argmax(y_pred, axis=-1), y_pred.shape[-1])[..., 1:]
            target = target[..., 1:]
        inter = ops.sum(pred * target * mask)
        union = ops.sum(ops.maximum(pred, target) * mask)
        self.intersection.assign_add(ops.cast(inter, self.dtype))
        self.union.assign_add(ops.cast(union, self.dtype))

    def result(self):
        return ops.where(self.union > 0, self.intersection / ops.maximum(self.union, 1.0), 1.0)

    def reset_state(self):
        self.intersection.assign(0.0)
        self.union.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


def make_loss(name: str, class_weights=None) -> keras.losses.Loss:
    """``"bce"`` -> masked cross-entropy; ``"bce_dice"`` -> cross-entropy + Dice; both
    with optional per-class weights on the cross-entropy."""
    if name == "bce":
        return MaskedCrossentropy(class_weights)
    if name == "bce_dice":
        return MaskedCrossentropyDice(class_weights)
    raise ValueError(f"loss must be 'bce' or 'bce_dice'; got {name!r}.")
