"""Hostile inputs and absurd sizes, replayed: each must be refused fast, small and clean.

    python benchmarks/bench_hostile.py

Every case runs in a fresh process that first imports napari-unet and Keras and loads a
tiny model (so start-up is not counted); then the case is timed, its peak resident
memory above that point measured (``ru_maxrss``), its folder listed before and after,
and what it printed on standard error counted. Goals (issue #27): refused in < 1 s and
< 100 MB, nothing written, one line of error. Cases, after the attack report of
docs/reliability.md: a bioimage.io package whose attached model file is 2 GiB of
zeros; a ``.zip`` that is a link to /dev/zero, or a FIFO; a ``.keras`` of 300,004
entries; ``train`` with 30,000-px patches or 2,000,000-patch batches on a 64 px image,
``train(batch_size=10**9)``; ``predict --uncertainty --passes 1000000``; option range
errors; a package whose attachment is no model file (the error must name the package).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import zipfile

PRELUDE = """
import io, json, os, resource, sys, time, contextlib
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np
from napari_unet import UNetConfig, load_model, save_model, train, make_nuclei
from napari_unet.cli import main
from napari_unet.io.images import write_image
from napari_unet.model.unet import UNetModel
model = save_model(UNetModel.new(UNetConfig(depth=1, start_neurons=2)), "m.keras")
load_model("m.keras")
image, labels = make_nuclei((64, 64), seed=0)
os.makedirs("images", exist_ok=True); os.makedirs("masks", exist_ok=True)
write_image("images/a.tif", image); write_image("masks/a.tif", labels)
before = sorted(os.listdir("."))
peak0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
err = io.StringIO()
started = time.perf_counter()
status = "not refused"
try:
    with contextlib.redirect_stderr(err):
        CASE
except SystemExit as done:
    status = f"exit {done.code}"
except ValueError as refused:
    status = f"{type(refused).__name__}"
    err.write(str(refused) + "\\n")
seconds = time.perf_counter() - started
peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak0) / 1024
lines = [line for line in err.getvalue().splitlines() if line.strip()]
print("RESULT " + json.dumps({"status": status, "seconds": round(seconds, 3),
                              "peak_mib": round(peak, 1), "error_lines": len(lines),
                              "message": lines[-1][:160] if lines else "",
                              "written": sorted(set(os.listdir(".")) - set(before))}))
"""

CASES = {
    "2 GiB-of-zeros attachment in a package": 'load_model("bomb.zip")',
    "package .zip linked to /dev/zero": 'load_model("zero.zip")',
    "package .zip that is a FIFO": 'load_model("fifo.zip")',
    "predict with a FIFO package": 'sys.exit(main(["predict", "fifo.zip", "images/a.tif", '
                                   '"out.tif"]))',
    ".keras with 300,004 entries": 'load_model("many.keras")',
    "package whose attachment is no model file": 'load_model("foreign.zip")',
    "train --patch-size 30000": 'sys.exit(main(["train", "--images", "images", "--masks", '
                                '"masks", "--out", "n.keras", "--patch-size", "30000"]))',
    "train --batch-size 2000000": 'sys.exit(main(["train", "--images", "images", "--masks", '
                                  '"masks", "--out", "n.keras", "--batch-size", "2000000"]))',
    "train(batch_size=10**9)": "train(image, labels, batch_size=10**9, verbose=False)",
    "predict --uncertainty --passes 1000000": 'main(["predict", "m.keras", "images/a.tif", '
                                              '"o.tif", "--uncertainty", "u.tif", "--passes", '
                                              '"1000000"])',
    "predict --tile-size 0": 'main(["predict", "m.keras", "images/a.tif", "o.tif", '
                             '"--tile-size", "0"])',
    "predict --threshold nan": 'main(["predict", "m.keras", "images/a.tif", "o.tif", '
                               '"--threshold", "nan"])',
    "train --epochs -1": 'main(["train", "--images", "images", "--masks", "masks", "--out", '
                         '"n.keras", "--epochs", "-1"])',
}


def _files(folder: str) -> None:
    """The hostile files every case may use, made once in ``folder``."""
    with zipfile.ZipFile(os.path.join(folder, "bomb.zip"), "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("rdf.yaml", "format_version: 0.5.0\n")
        with zf.open("napari_unet_model.keras", "w", force_zip64=True) as f:
            block = bytes(1 << 20)
            for _ in range(2048):
                f.write(block)
    with zipfile.ZipFile(os.path.join(folder, "foreign.zip"), "w") as zf:
        zf.writestr("napari_unet_model.keras", b"not a model file")
    os.symlink("/dev/zero", os.path.join(folder, "zero.zip"))
    os.mkfifo(os.path.join(folder, "fifo.zip"))
    with zipfile.ZipFile(os.path.join(folder, "many.keras"), "w") as zf:
        for i in range(300_004):
            zf.writestr(f"e{i}", b"")


def main() -> None:
    results = {}
    with tempfile.TemporaryDirectory(prefix="napari-unet-hostile-") as root:
        files = os.path.join(root, "files")
        os.mkdir(files)
        _files(files)
        for name, case in CASES.items():
            work = tempfile.mkdtemp(dir=root)
            for entry in os.listdir(files):  # links: a link to /dev/zero or a FIFO stays one
                os.symlink(os.path.join(files, entry), os.path.join(work, entry))
            done = subprocess.run([sys.executable, "-c", PRELUDE.replace("CASE", case)],
                                  cwd=work, capture_output=True, text=True,
                                  env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
            line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
            results[name] = (json.loads(line[-1][7:]) if line
                             else {"crashed": done.stderr[-500:]})
            print(f"{name}: {json.dumps(results[name])}", flush=True)
    ok = all(r.get("seconds", 99) < 1 and r.get("peak_mib", 999) < 100 and not r["written"]
             and r["error_lines"] == 1 and r["status"] != "not refused"
             for r in results.values())
    print(f"all refused in < 1 s and < 100 MB, nothing written, one line: {ok}")


if __name__ == "__main__":
    main()
