"""Scale-out: `ijseg predict --cluster local:1` against `local:2` (and the serial run) on the same
folder, side by side in one run; the outputs of each are checked equal to the serial run's.

    python bench/cluster.py --model bench/work/sim3k-100/ijseg-default --images 40 --size 1024

Writes the times and the 1 -> 2 worker ratio as JSON (``--out``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

IJSEG = str(Path(sys.executable).with_name("ijseg"))


def _images(folder: Path, n: int, size: int) -> None:
    """``n`` simulated images of sim3k-100's density (``bench/speed.py``'s)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from speed import sim_image

    folder.mkdir(parents=True)
    for k in range(n):
        tifffile.imwrite(folder / f"{k:04d}.tif", sim_image(size, seed=k)[0])


def _predict(model: Path, src: Path, out: Path, cluster: str | None) -> float:
    cmd = [IJSEG, "-q", "predict", "--model", str(model), "--input", str(src), "--out", str(out)]
    if cluster:
        cmd += ["--cluster", cluster]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t0


def _same(a: Path, b: Path) -> bool:
    if (a / "summary.csv").read_text() != (b / "summary.csv").read_text():
        return False
    return all(np.array_equal(tifffile.imread(f), tifffile.imread(b / f.name)) for f in a.glob("*_labels.tif"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=2, help="rounds of serial, local:1, local:2")
    ap.add_argument("--out", type=Path, default=Path("bench/results/cluster.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ijseg-bench-cluster-") as tmp:
        tmp = Path(tmp)
        _images(tmp / "in", args.images, args.size)
        times: dict[str, list[float]] = {"serial": [], "local:1": [], "local:2": []}
        for r in range(args.repeat):
            for name in times:
                out = tmp / f"{name.replace(':', '')}-{r}"
                times[name].append(_predict(args.model, tmp / "in", out, None if name == "serial" else name))
                print(f"round {r + 1} {name}: {times[name][-1]:.1f} s", flush=True)
        equal = all(_same(tmp / "serial-0", tmp / f"{n.replace(':', '')}-{r}") for n in ("local:1", "local:2")
                    for r in range(args.repeat))
    best = {k: min(v) for k, v in times.items()}
    result = {"command": " ".join(sys.argv), "cpu_count": os.cpu_count(), "images": args.images, "size": args.size,
              "times_s": times, "best_s": best, "ratio_1_to_2_workers": best["local:1"] / best["local:2"],
              "ratio_serial_to_2_workers": best["serial"] / best["local:2"], "outputs_equal_serial": equal}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"| run | best of {args.repeat} (s) | MP/s |\n|---|---|---|")
    for k, v in best.items():
        print(f"| {k} | {v:.1f} | {args.images * args.size ** 2 / 1e6 / v:.2f} |")
    print(f"1 -> 2 workers: {result['ratio_1_to_2_workers']:.2f}x; outputs equal to the serial run: {equal}")


if __name__ == "__main__":
    main()
