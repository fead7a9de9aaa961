"""Bridge overhead: the headless ImageJ batch macro against `ijseg predict` on the same folder.

Runs, side by side in one process tree on the same images and model:
  1. `ijseg predict --model M --input DIR --out O1` (labels, measurements, ROIs, summary);
  2. `ijseg macro run fiji_scripts/batch_segment.ijm --arg input=DIR --arg output=O2 --arg model=M`
     (ImageJ under a private Xvfb: IJSeg Predict + IJSeg Measure + saving per image);
  3. the JVM + ImageJ start alone (`ijseg macro run` on an empty macro);
  4. with --standalone, ImageJ on its own (`java -jar ij.jar -batch`, as a Fiji without Python
     runs the plugin) on the same images, its IJSeg Predict calling the ijseg command line: in one
     `ijseg serve` process, and with -Dijseg.noserver=true in an `ijseg` process per image;
and prints wall times, per-image times and their ratio.

    python bench/bridge.py --model demo/model --images demo/data/test/images --n 20 [--repeat 3] [--standalone]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IJSEG = str(Path(sys.executable).with_name("ijseg"))


def _timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return time.perf_counter() - t


def compare(model: str, files: list[Path], repeat: int = 3) -> dict:
    """Wall times of the three runs on copies of ``files``: start_s, predict_s, macro_s (medians
    of ``repeat`` runs, predict and macro alternating so that a change of the machine's speed hits
    both), the runs themselves, the median of the per-pair ratios, and n."""
    runs: dict[str, list[float]] = {"start_s": [], "predict_s": [], "macro_s": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "in"
        src.mkdir()
        for f in files:
            shutil.copy(f, src / f.name)
        empty = tmp / "empty.ijm"
        empty.write_text("x = 1;\n")
        for i in range(repeat):
            runs["start_s"].append(_timed([IJSEG, "-q", "macro", "run", str(empty)]))
            runs["predict_s"].append(_timed([IJSEG, "-q", "predict", "--model", model, "--input", str(src),
                                             "--out", str(tmp / f"o1-{i}")]))
            macro = str(REPO / "fiji_scripts" / "batch_segment.ijm")
            runs["macro_s"].append(_timed([IJSEG, "-q", "macro", "run", macro,
                                           "--arg", f"input={src}", "--arg", f"output={tmp / f'o2-{i}'}",
                                           "--arg", f"model={model}"]))
    ratios = [m / p for m, p in zip(runs["macro_s"], runs["predict_s"])]
    out = {k: statistics.median(v) for k, v in runs.items()}
    out.update(n=len(files), repeat=repeat, runs=runs, ratio=statistics.median(ratios), ratios=ratios)
    return out


def standalone(model: str, files: list[Path]) -> dict:
    """Wall times of a stand-alone ImageJ (under a private Xvfb) segmenting ``files`` with IJSeg
    Predict and saving the labels, with the ``ijseg serve`` process and with a process per image."""
    import os

    from ijseg.doctor import find_ij_jar
    from ijseg.ij._xvfb import Xvfb
    from ijseg.ij.plugin import plugin_home

    jar = find_ij_jar()
    home = plugin_home(jar)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        code = "".join(f'open("{f}");\nrun("IJSeg Predict", "model=[{model}] output=labels");\n'
                       f'saveAs("Tiff", "{tmp / f.name}");\nclose("*");\n' for f in files)
        macro = tmp / "standalone.ijm"
        macro.write_text(code)
        xvfb = Xvfb.start()
        try:
            env = dict(os.environ, DISPLAY=xvfb.display, IJSEG_EXECUTABLE=IJSEG)
            for name, server in (("serve", True), ("process_per_image", False)):
                t = time.perf_counter()
                subprocess.run(["java", f"-Dplugins.dir={home}", f"-Dijseg.noserver={not server}", "-jar", str(jar),
                                "-batch", str(macro)], env=env, check=True, capture_output=True, timeout=3600)
                out[f"{name}_s"] = time.perf_counter() - t
        finally:
            xvfb.stop()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--images", required=True, type=Path)
    ap.add_argument("--n", type=int, default=20, help="number of images (default 20)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each path, alternating (default 3)")
    ap.add_argument("--standalone", action="store_true",
                    help="also ImageJ on its own (java -jar ij.jar), with and without the ijseg serve process")
    args = ap.parse_args()
    files = sorted(args.images.glob("*.tif"))[: args.n]
    r = compare(args.model, files, args.repeat)
    if args.standalone:
        r.update(standalone(args.model, files))
    n, t_predict, t_macro = r["n"], r["predict_s"], r["macro_s"]
    print(f"| path | wall s ({n} images, median of {r['repeat']}) | s/image |")
    print("|---|---|---|")
    print(f"| `ijseg predict` (CLI, one process) | {t_predict:.1f} | {t_predict / n:.3f} |")
    print(f"| `ijseg macro run batch_segment.ijm` (ImageJ + Xvfb) | {t_macro:.1f} | {t_macro / n:.3f} |")
    print(f"| JVM + ImageJ + Xvfb start, empty macro (whole process) | {r['start_s']:.1f} | |")
    if args.standalone:
        print(f"| stand-alone ImageJ, IJSeg Predict through `ijseg serve` | {r['serve_s']:.1f} "
              f"| {r['serve_s'] / n:.3f} |")
        print(f"| stand-alone ImageJ, an `ijseg` process per image | {r['process_per_image_s']:.1f} "
              f"| {r['process_per_image_s'] / n:.3f} |")
    print(f"\nratio macro / predict, whole run: {r['ratio']:.2f} (median of the pairs: "
          f"{', '.join(f'{x:.2f}' for x in r['ratios'])})")
    if args.standalone:
        print(f"ratio stand-alone process per image / serve: {r['process_per_image_s'] / r['serve_s']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
