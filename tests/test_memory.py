"""Soak test: repeated training and prediction in one process must not keep memory."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import napari_unet

# Runs in a fresh interpreter so other tests' models and caches do not blur the figures.
SOAK = """
import gc, json, psutil
from napari_unet import UNetConfig, make_nuclei, predict, train
image, labels = make_nuclei((64, 64), seed=1)
rss = []
for cycle in range(20):
    result = train([image], [labels], UNetConfig(depth=1, start_neurons=4), patch_size=32,
                   batch_size=2, epochs=1, steps_per_epoch=2, seed=cycle)
    predict(result.model, image)
    del result
    gc.collect()
    rss.append(psutil.Process().memory_info().rss / 2**20)
print(json.dumps(rss))
"""


def test_repeated_training_does_not_grow_memory():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join([str(Path(napari_unet.__file__).parents[1]),
                                           os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", SOAK], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    rss = json.loads(done.stdout.strip().splitlines()[-1])
    # medians of cycles 3-7 and 16-20: one cycle's resident size wobbles by 10-30 MiB
    growth = float(np.median(rss[15:]) - np.median(rss[2:7]))
    assert growth < 20, f"RSS grew {growth:.0f} MiB from cycles 3-7 to 16-20: " \
                        f"{[round(r) for r in rss]}"
