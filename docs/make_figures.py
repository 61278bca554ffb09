"""Figures of the user guide that need no napari window: docs/images/targets.png.

    python docs/make_figures.py
"""

from pathlib import Path

import numpy as np


def targets_figure(path: Path) -> None:
    """Image, 2-class target and boundary-aware target of one crowded synthetic image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from napari_unet.labels.targets import boundary_classes
    from napari_unet.samples.nuclei import make_crowded_nuclei

    image, labels = make_crowded_nuclei((160, 160), seed=3)
    panels = [(image, "image", "gray"), (labels > 0, "2-class target", "gray"),
              (boundary_classes(labels, 2), "boundary-aware target (3 classes)", "gray")]
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.6), dpi=100)
    for ax, (data, title, cmap) in zip(axes, panels):
        lo, hi = np.percentile(data, (1, 99.8)) if data.dtype == np.uint16 else (None, None)
        ax.imshow(data, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(title, fontsize=11)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    out = Path(__file__).parent / "images"
    out.mkdir(exist_ok=True)
    targets_figure(out / "targets.png")
    print("wrote", out / "targets.png")
