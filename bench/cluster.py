"""Scale-out: `ijseg predict --cluster local:1` against `local:2` (and the serial run) on the same
folder, side by side in one run; the outputs of each are checked equal to the serial run's.

    python bench/cluster.py --model bench/work/sim3k-100/ijseg-default --images 40 --size 1024

With ``--chunked SIZE`` the input is one SIZE x SIZE image of the same density as an OME-Zarr
store (chunks of 1024), segmented block by block (``ijseg predict`` on a ``.zarr``); the labels and
measurements of each run are checked equal to the serial run's, and the serial run's peak
resident memory is recorded.

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


def _chunked(path: Path, size: int) -> Path:
    """One ``size`` x ``size`` image of sim3k-100's density (a 2048 x 2048 image repeated) as an
    OME-Zarr 0.4 store."""
    import zarr

    sys.path.insert(0, str(Path(__file__).parent))
    from speed import sim_image

    base = sim_image(min(size, 2048), seed=0)[0]  # simulating 8192 x 8192 at once takes many minutes
    reps = -(-size // base.shape[0])
    img = np.ascontiguousarray(np.tile(base, (reps, reps))[:size, :size])
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    group.create_array("0", shape=img.shape, chunks=(1024, 1024), dtype=img.dtype,
                       chunk_key_encoding={"name": "v2", "separator": "/"})[:] = img
    axes = [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    level = {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.0, 1.0]}]}
    group.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": [level]}]
    return path


def _predict(model: Path, src: Path, out: Path, cluster: str | None) -> tuple[float, float]:
    """Seconds, and the peak resident memory in GB of the ijseg process (not of Dask's workers)."""
    cmd = ["/usr/bin/time", "-f", "%M", IJSEG, "-q", "predict", "--model", str(model), "--input", str(src),
           "--out", str(out)]
    if cluster:
        cmd += ["--cluster", cluster]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, check=True, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    return seconds, int(done.stderr.strip().splitlines()[-1]) / 1e6


def _same(a: Path, b: Path) -> bool:
    if (a / "summary.csv").read_text() != (b / "summary.csv").read_text():
        return False
    if any(a.glob("*.ome.zarr")):
        import zarr

        return all(np.array_equal(zarr.open(str(f), mode="r")["0"][:], zarr.open(str(b / f.name), mode="r")["0"][:])
                   for f in a.glob("*.ome.zarr")) and all(
            f.read_text() == (b / f.name).read_text() for f in a.glob("*_measurements.csv"))
    return all(np.array_equal(tifffile.imread(f), tifffile.imread(b / f.name)) for f in a.glob("*_labels.tif"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=2, help="rounds of serial, local:1, local:2")
    ap.add_argument("--chunked", type=int, metavar="SIZE",
                    help="one SIZE x SIZE OME-Zarr image, blockwise, instead of a folder of images")
    ap.add_argument("--out", type=Path, default=Path("bench/results/cluster.json"))
    args = ap.parse_args()
    peak: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="ijseg-bench-cluster-") as tmp:
        tmp = Path(tmp)
        if args.chunked:
            src = _chunked(tmp / "in.ome.zarr", args.chunked)
            args.images, args.size = 1, args.chunked
        else:
            src = tmp / "in"
            _images(src, args.images, args.size)
        times: dict[str, list[float]] = {"serial": [], "local:1": [], "local:2": []}
        for r in range(args.repeat):
            for name in times:
                out = tmp / f"{name.replace(':', '')}-{r}"
                seconds, gb = _predict(args.model, src, out, None if name == "serial" else name)
                times[name].append(seconds)
                peak[name] = max(peak.get(name, 0.0), gb)
                print(f"round {r + 1} {name}: {seconds:.1f} s, peak RSS of ijseg {gb:.2f} GB", flush=True)
        equal = all(_same(tmp / "serial-0", tmp / f"{n.replace(':', '')}-{r}") for n in ("local:1", "local:2")
                    for r in range(args.repeat))
    best = {k: min(v) for k, v in times.items()}
    result = {"command": " ".join(sys.argv), "cpu_count": os.cpu_count(), "images": args.images, "size": args.size,
              "chunked": bool(args.chunked), "peak_rss_gb_of_the_ijseg_process": peak,
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
