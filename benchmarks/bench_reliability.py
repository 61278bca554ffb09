"""Reliability figures for docs/reliability.md: kills during saving, memory across trainings.

    python benchmarks/bench_reliability.py [--kills 40] [--cycles 20]

1. Kills: a child process saves the default U-Net to one path over and over; it is
   SIGKILLed at a random moment, ``--kills`` times. After each kill the file must
   load and predict. Killed writers leave hidden partial files; a save made more
   than two minutes later must remove them all.
2. Memory: ``--cycles`` train + predict cycles of a small U-Net in one fresh
   process; prints the resident memory after each cycle and the growth from cycle 3.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SAVER = """
import sys
from napari_unet import UNetConfig, save_model
from napari_unet.model.unet import UNetModel
model = UNetModel.new(UNetConfig())
print("ready", flush=True)
while True:
    save_model(model, sys.argv[1])
"""

SOAK = """
import gc, json, sys, psutil
from napari_unet import UNetConfig, make_nuclei, predict, train
image, labels = make_nuclei((64, 64), seed=1)
rss = []
for cycle in range(int(sys.argv[1])):
    result = train([image], [labels], UNetConfig(depth=2, start_neurons=4), patch_size=32,
                   batch_size=2, epochs=1, steps_per_epoch=2, seed=cycle, verbose=False)
    predict(result.model, image)
    del result
    gc.collect()
    rss.append(round(psutil.Process().memory_info().rss / 2**20, 1))
print(json.dumps(rss))
"""


def kills(n: int) -> dict:
    """Kill a saving process ``n`` times; returns counts of intact files and left-overs."""
    import numpy as np

    from napari_unet import UNetConfig, load_model, save_model
    from napari_unet.model.unet import UNetModel

    rng = random.Random(0)
    intact, most_partials = 0, 0
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "model.keras"
        save_model(UNetModel.new(UNetConfig()), target)
        probe = np.random.default_rng(0).random((1, 64, 64, 1)).astype("float32")
        for _ in range(n):
            child = subprocess.Popen([sys.executable, "-c", SAVER, str(target)],
                                     stdout=subprocess.PIPE, text=True)
            child.stdout.readline()  # "ready": the model is built, saving starts now
            time.sleep(rng.uniform(0.0, 1.5))
            child.send_signal(signal.SIGKILL)
            child.wait()
            model = load_model(target)
            intact += bool(np.isfinite(model.keras_model.predict_on_batch(probe)).all())
            most_partials = max(most_partials, len(list(Path(tmp).glob(".model.*.keras"))))
        left = list(Path(tmp).glob(".model.*.keras"))
        old = time.time() - 3600  # as if the next save came an hour later
        for partial in left:
            os.utime(partial, (old, old))
        save_model(model, target)
        after = [p.name for p in Path(tmp).iterdir() if p != target]
    return {"kills": n, "intact_after_kill": intact,
            "partial_files_of_killed_writers_at_most": most_partials,
            "partials_before_a_later_save": len(left), "files_left_after_a_later_save": after}


def memory(cycles: int) -> dict:
    """RSS (MiB) after each train + predict cycle in a fresh process."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", SOAK, str(cycles)], env=env,
                          capture_output=True, text=True, check=True)
    rss = json.loads(done.stdout.strip().splitlines()[-1])
    import numpy as np

    return {"cycles": cycles, "rss_mib": rss, "growth_from_cycle_3_mib": round(rss[-1] - rss[2], 1),
            "growth_median_3_7_to_16_20_mib": round(float(np.median(rss[15:])
                                                          - np.median(rss[2:7])), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=40)
    parser.add_argument("--cycles", type=int, default=20)
    args = parser.parse_args()
    print(json.dumps({"kills": kills(args.kills), "memory": memory(args.cycles)}, indent=2))


if __name__ == "__main__":
    main()
