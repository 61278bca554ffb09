"""napari sample data: synthetic nuclei with their ground truth (no TensorFlow, no Qt)."""

from __future__ import annotations

from .samples.nuclei import make_nuclei, make_nuclei_stack


def nuclei_sample():
    """A 512x512 synthetic nuclei image and its ground-truth labels, as LayerDataTuples."""
    image, labels = make_nuclei((512, 512), seed=0)
    return [
        (image, {"name": "nuclei", "colormap": "gray"}, "image"),
        (labels, {"name": "nuclei ground truth", "opacity": 0.5}, "labels"),
    ]


def nuclei_stack_sample():
    """A 24x256x256 synthetic 3D nuclei stack and its labels (Z sampled twice as coarse)."""
    image, labels = make_nuclei_stack((24, 256, 256), seed=0)
    meta = {"scale": (2.0, 1.0, 1.0)}
    return [
        (image, {"name": "nuclei 3D", "colormap": "gray", **meta}, "image"),
        (labels, {"name": "nuclei 3D ground truth", "opacity": 0.5, **meta}, "labels"),
    ]
