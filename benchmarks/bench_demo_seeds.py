"""How stable `napari-unet demo --quick` is: its held-out instance AP over several seeds.

    python benchmarks/bench_demo_seeds.py [--seeds 5]

Runs the quick demo (`napari_unet.cli.demo.quick_demo_settings`) once per seed, each in a new
temporary folder, and prints foreground IoU, AP@0.5 and AP@0.75 per seed, then the mean
and the worst AP@0.5. The goal (issue #10): mean AP@0.5 >= 0.90, no seed below 0.8.
"""

from __future__ import annotations

import argparse
import tempfile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()

    from napari_unet.cli.demo import quick_demo_settings, run_demo

    aps = []
    for seed in range(args.seeds):
        with tempfile.TemporaryDirectory(prefix="napari-unet-demo-") as out:
            m = run_demo(out, quick_demo_settings(seed), on_progress=lambda event: None)
        aps.append(m["ap@0.5"])
        print(f"seed {seed}: foreground IoU {m['foreground_iou']:.3f}, AP@0.5 {m['ap@0.5']:.3f}, "
              f"AP@0.75 {m['ap@0.75']:.3f}, training {m['train_seconds']:.0f} s, calibration "
              f"{m['calibration']}", flush=True)
    print(f"mean AP@0.5 {sum(aps) / len(aps):.3f}, worst {min(aps):.3f} over {len(aps)} seeds")


if __name__ == "__main__":
    main()
