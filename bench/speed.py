"""Speed: ijseg against StarDist on the same images in one run, the U-Net against the CPU's
matmul peak, start-up time, training throughput and the ImageJ bridge overhead.

    python bench/speed.py                       # models from bench/accuracy.py --dataset dsb2018
    python bench/speed.py --ijseg-model M --stardist-model S --bridge-images 100

1. Inference: simulated touching nuclei (sim3k density) of 512x512 and 2048x2048. ijseg is the
   ``ijseg predict`` path (normalise, tiled U-Net, post-processing to labels, measurements);
   StarDist is ``predict_instances`` on the percentile-normalised image (labels, no
   measurements). Median of ``--repeat`` runs after one warm-up; megapixels per second. Also
   the share of post-processing plus measurements in ijseg's time, and the time to write what
   ``ijseg predict`` writes (labels TIFF, measurement CSV, ROI zip), which StarDist does not do.
   Then the model exported as a bioimage.io bundle predicts the same image as the folder in
   each weight format (max abs difference), and ``ijseg predict`` runs on one ``--memory``-sized
   image as a child process whose peak resident memory is read back.
2. Roofline: the U-Net's forward FLOPs (2 x MACs of its convolutions) over the measured time
   of the bare network as ``ijseg predict`` runs it (the inference graph of
   ``ijseg.models.inference``; the Keras model beside it), against a float32 matmul (TensorFlow
   and numpy) on this machine; the same in bfloat16 where the CPU has it (mixed precision).
3. Start-up: ``import ijseg``, ``ijseg --help`` and ``ijseg predict`` on one 256x256 image as
   fresh processes, against the in-process time of that image.
4. Training: one step of the default network in float32 and in the default policy (mixed
   precision where the hardware has it); patches/s of ijseg and StarDist from the accuracy
   results (whole training loop, validation included).
5. Bridge: ``bench/bridge.py`` on ``--bridge-images`` simulated 256x256 images.

Results go to ``--out`` (JSON) and are printed as Markdown tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# an entry point, like the ijseg command line: TensorFlow logs errors only (the library sets nothing)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
IJSEG = str(Path(sys.executable).with_name("ijseg"))
sys.path.insert(0, str(REPO / "bench"))


def _median_time(fn, repeat: int) -> float:
    fn()  # warm-up: graph tracing, allocations
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def sim_image(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from ijseg.data.simulate import PRESETS, simulate_image

    # the simulator scales the number of objects with the area: the density of sim3k-100
    return simulate_image(dataclasses.replace(PRESETS["sim3k-100"].params, shape=(size, size)), rng=seed)


# ---------------------------------------------------------------------------------------------


def inference(ijseg_model: Path, stardist_model: Path, sizes: list[int], repeat: int) -> list[dict]:
    from csbdeep.utils import normalize
    from stardist.models import StarDist2D

    from ijseg.data.io import Image
    from ijseg.measure import measure
    from ijseg.pipeline import load_predictor, write_outputs
    from ijseg.postprocess import postprocess

    pred = load_predictor(ijseg_model)
    sd = StarDist2D(None, name=stardist_model.name, basedir=str(stardist_model.parent))
    rows = []
    for size in sizes:
        img, _ = sim_image(size, seed=size)
        image = Image(img, "YX")
        x = img.astype(np.float32)
        parts = {}

        def ijseg_run(image=image, x=x, parts=parts):
            # the steps of ijseg.pipeline.segment, timed one by one
            t0 = time.perf_counter()
            prob = pred.predict(image)
            t1 = time.perf_counter()
            seg = postprocess(prob, pred.config, pred.postprocessing)
            t2 = time.perf_counter()
            table = measure(seg.labels, x, pixel_size=image.pixel_size)
            t3 = time.perf_counter()
            parts.update(network=t1 - t0, postprocess=t2 - t1, measure=t3 - t2, n=int(seg.labels.max()),
                         result=(image, prob, seg, table))

        def stardist_run(x=x, parts=parts):
            labels, _ = sd.predict_instances(normalize(x, 1, 99.8, axis=(0, 1)), show_tile_progress=False)
            parts["sd_n"] = int(labels.max())

        t_ij = _median_time(ijseg_run, repeat)
        t_sd = _median_time(stardist_run, repeat)
        with tempfile.TemporaryDirectory() as tmp:  # what `ijseg predict` writes: labels, table, ROIs
            t_write = _median_time(lambda: write_outputs(Path(tmp), "img", *parts["result"], "labels"), repeat)
        mp = size * size / 1e6
        post = parts["postprocess"] + parts["measure"]
        rows.append({"size": size, "ijseg_s": t_ij, "stardist_s": t_sd, "ijseg_mp_s": mp / t_ij,
                     "stardist_mp_s": mp / t_sd, "ratio": t_sd / t_ij, "ijseg_network_s": parts["network"],
                     "ijseg_postprocess_s": parts["postprocess"], "ijseg_measure_s": parts["measure"],
                     "post_measure_share": post / (parts["network"] + post), "ijseg_write_s": t_write,
                     "ijseg_objects": parts["n"], "stardist_objects": parts["sd_n"]})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def bundle_agreement(ijseg_model: Path, size: int = 512) -> dict:
    """Export the model as a bioimage.io bundle and predict one image through the bundle (its
    weights, pre- and post-processing run by bioimageio.core) and through the folder."""
    from ijseg.bundles.export import export_bundle
    from ijseg.data.io import Image
    from ijseg.pipeline import load_predictor

    img, _ = sim_image(size, seed=3)
    image = Image(img, "YX")
    folder = load_predictor(ijseg_model).predict(image)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = export_bundle(ijseg_model, Path(tmp) / "bundle.zip")
        out = {"size": size}
        for fmt in ("keras_v3", "tensorflow_saved_model_bundle", "onnx"):
            prob = load_predictor(bundle, weight_format=fmt).predict(image)
            out[f"max_abs_diff_{fmt}"] = float(np.abs(prob - folder).max())
    print(json.dumps(out), flush=True)
    return out


def peak_memory(ijseg_model: Path, size: int = 8192) -> dict:
    """Peak resident memory of an ``ijseg predict`` process on one ``size`` x ``size`` image (a
    2048 x 2048 simulated image repeated), from the kernel's accounting of the finished child."""
    import tifffile

    tile, _ = sim_image(2048, seed=11)
    reps = -(-size // 2048)
    img = np.tile(tile, (reps, reps))[:size, :size]
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "big.tif"
        tifffile.imwrite(f, img)
        child = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
                 "r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
                 "r.returncode and sys.exit(r.stderr); "
                 "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.perf_counter() - t)")
        r = subprocess.run([sys.executable, "-c", child, IJSEG, "-q", "predict", "--model", str(ijseg_model.resolve()),
                            "--input", str(f), "--out", str(Path(tmp) / "out")],
                           capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"ijseg predict on a {size}x{size} image failed: {r.stderr.strip()}")
    kib, seconds = r.stdout.split()
    out = {"size": size, "peak_rss_gb": int(kib) * 1024 / 1e9, "wall_s": float(seconds)}
    print(json.dumps(out), flush=True)
    return out


def unet_flops(model) -> float:
    """Forward FLOPs per input pixel: 2 x multiply-adds of every convolution, from the output size
    of each convolution (probed on a 64x64 input). A transposed convolution of stride s adds
    kh*kw/s**2 products per output pixel and input channel."""
    import keras

    convs = [lyr for lyr in model.layers if type(lyr).__name__ in ("Conv2D", "Conv2DTranspose")]
    probe = keras.Model(model.inputs, [lyr.output for lyr in convs])
    outs = probe(np.zeros((1, 64, 64, model.inputs[0].shape[-1]), np.float32))
    flops = 0.0
    for lyr, o in zip(convs, outs):
        kh, kw = lyr.kernel.shape[:2]
        if type(lyr).__name__ == "Conv2D":
            cin, cout, per = lyr.kernel.shape[2], lyr.kernel.shape[3], kh * kw
        else:  # kernel (kh, kw, out, in)
            cout, cin = lyr.kernel.shape[2], lyr.kernel.shape[3]
            per = kh * kw / (lyr.strides[0] * lyr.strides[1])
        flops += 2.0 * per * cin * cout * (o.shape[1] * o.shape[2]) / (64 * 64)
    return flops


def roofline(ijseg_model: Path, repeat: int) -> dict:
    import tensorflow as tf

    from ijseg.models.unet import build_unet
    from ijseg.predict import Predictor

    pred = Predictor(ijseg_model)
    per_px = unet_flops(pred.model.keras)
    x = np.random.default_rng(0).random((1, 1024, 1024, 1), dtype=np.float32)
    net = pred.model.run  # what `ijseg predict` runs: the inference graph (ijseg.models.inference)
    f32 = tf.function(lambda v: pred.model.keras(v, training=False), reduce_retracing=True)
    n = 2048
    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    # the network, the Keras model and the matmul alternate, so that a change of the machine's
    # speed hits all three
    t_nets, t_keras, t_tfs = [], [], []
    for fn, times in [(lambda: net(x), t_nets), (lambda: np.asarray(f32(x)), t_keras),
                      (lambda: tf.linalg.matmul(a, b).numpy(), t_tfs)] * max(repeat, 5):
        times.append(_median_time(fn, 1))
    flop = per_px * x.shape[1] * x.shape[2]  # of one forward pass

    def of_matmul(times):  # each run's rate over the rate of the matmul run beside it
        return [(flop / t) / (2 * n**3 / tt) for t, tt in zip(times, t_tfs)]

    fractions = of_matmul(t_nets)
    t_net, t_tf, t_k = statistics.median(t_nets), statistics.median(t_tfs), statistics.median(t_keras)
    an, bn = a.numpy(), b.numpy()
    t_np = _median_time(lambda: an @ bn, repeat)
    peak_tf, peak_np = 2 * n**3 / t_tf, 2 * n**3 / t_np
    out = {"unet_params": int(pred.model.keras.count_params()), "unet_gflop_per_mpx": per_px * 1e6 / 1e9,
           "unet_s_1024": t_net, "unet_gflops": flop / t_net / 1e9, "matmul_tf_gflops": peak_tf / 1e9,
           "matmul_numpy_gflops": peak_np / 1e9, "fraction_of_tf_matmul": statistics.median(fractions),
           "fractions": fractions, "keras_s_1024": t_k, "keras_gflops": flop / t_k / 1e9,
           "keras_fraction_of_tf_matmul": statistics.median(of_matmul(t_keras)),
           "inference_against_keras_max_abs_diff": float(np.abs(net(x) - np.asarray(f32(x))).max())}
    # bfloat16 (mixed precision): the same network in the mixed_bfloat16 policy, same weights
    a16, b16 = tf.cast(a, tf.bfloat16), tf.cast(b, tf.bfloat16)
    t_tf16 = _median_time(lambda: tf.linalg.matmul(a16, b16).numpy(), repeat)
    cfg = pred.config.replace(train_mixed_precision=True)
    m16 = build_unet(cfg)
    m16.set_weights(pred.model.keras.get_weights())
    f16 = tf.function(lambda v: m16(v, training=False), reduce_retracing=True)
    t_net16 = _median_time(lambda: np.asarray(f16(x)), repeat)
    y32, y16 = net(x), np.asarray(f16(x)).astype(np.float32)
    out.update(matmul_bf16_gflops=2 * n**3 / t_tf16 / 1e9, unet_bf16_s_1024=t_net16,
               unet_bf16_gflops=flop / t_net16 / 1e9,
               bf16_max_abs_diff=float(np.abs(y32 - y16).max()))
    print(json.dumps(out), flush=True)
    return out


def training_step(repeat: int) -> dict:
    """Training steps of the default network (batch 8 of 256x256), float32 against the default
    policy (``train_mixed_precision="auto"``)."""
    from ijseg._tf import import_tf, policy_name
    from ijseg.config import Config
    from ijseg.models.losses import make_loss
    from ijseg.models.unet import build_unet
    from ijseg.train import _make_optimizer

    _, keras = import_tf()
    rng = np.random.default_rng(0)
    x = rng.random((8, 256, 256, 1), dtype=np.float32)
    y = (rng.random((8, 256, 256, 1)) > 0.5).astype(np.uint8)
    out = {}
    for label, mp in (("float32", False), ("default", "auto")):
        cfg = Config(train_mixed_precision=mp)
        model = build_unet(cfg)
        model.compile(optimizer=_make_optimizer(cfg, keras, policy_name(mp)), loss=make_loss(cfg.loss, 1))
        t = _median_time(lambda m=model: m.train_on_batch(x, y), repeat)
        out[label] = {"policy": policy_name(mp), "step_s": t, "patches_per_s": 8 / t}
    print(json.dumps(out), flush=True)
    return out


def startup(ijseg_model: Path, repeat: int) -> dict:
    from ijseg.data.io import Image
    from ijseg.pipeline import segment
    from ijseg.predict import Predictor

    img, _ = sim_image(256, seed=7)
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "one.tif"
        import tifffile

        tifffile.imwrite(f, img)

        def timed(cmd):
            return _median_time(lambda: subprocess.run(cmd, check=True, capture_output=True), repeat)

        t_import = timed([sys.executable, "-c", "import ijseg"])
        t_help = timed([IJSEG, "--help"])
        t_cli = timed([IJSEG, "-q", "predict", "--model", str(ijseg_model), "--input", str(f), "--out",
                       str(Path(tmp) / "out")])
    pred = Predictor(ijseg_model)
    t_in = _median_time(lambda: segment(pred, Image(img, "YX")), repeat)
    out = {"import_ijseg_s": t_import, "ijseg_help_s": t_help, "ijseg_predict_one_image_s": t_cli,
           "in_process_one_image_s": t_in, "startup_overhead_s": t_cli - t_in}
    print(json.dumps(out), flush=True)
    return out


def bridge(ijseg_model: Path, n: int) -> dict:
    import tifffile

    from bridge import compare

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        for i in range(n):
            img, _ = sim_image(256, seed=1000 + i)
            tifffile.imwrite(folder / f"{i:04d}.tif", img)
        out = compare(str(ijseg_model), sorted(folder.glob("*.tif")))
    print(json.dumps(out), flush=True)
    return out


# ---------------------------------------------------------------------------------------------


#: issue 14's speed goals: (row, the value in the results, its bound, whether it is a minimum)
GOALS = (
    ("`predict` with measurements / StarDist's `predict_instances`, 512x512 (speed-up)",
     lambda r: _row(r, 512)["ratio"], 2.0, True),
    ("the same, 2048x2048", lambda r: _row(r, 2048)["ratio"], 2.0, True),
    ("`predict` MP/s at 2048x2048", lambda r: _row(r, 2048)["ijseg_mp_s"], 2.9, True),
    ("forward pass / float32 matmul rate", lambda r: r["roofline"]["fraction_of_tf_matmul"], 0.5, True),
    ("post-processing + measurements share of `predict`, 2048x2048",
     lambda r: _row(r, 2048)["post_measure_share"], 0.2, False),
    ("bridge: macro / `predict`, median of the pairs", lambda r: r["bridge"]["ratio"], 1.10, False),
    ("peak RSS of `predict` on 8192x8192, GB", lambda r: r["memory"]["peak_rss_gb"], 3.0, False),
    ("bundle against folder, max abs difference",
     lambda r: max(v for k, v in r["bundle"].items() if k.startswith("max_abs_diff_")), 1e-4, False),
)


def _row(r: dict, size: int) -> dict:
    return next(row for row in r["inference"] if row["size"] == size)


def goals(r: dict) -> str:
    """The speed goals of issue 14 as rows (value, bound, met); a goal whose measurement this run
    skipped is left out."""
    lines = ["| goal | measured | bound | met |", "|---|---|---|---|"]
    for name, value, bound, minimum in GOALS:
        try:
            v = value(r)
        except (KeyError, StopIteration):
            continue
        met = v >= bound if minimum else v <= bound
        lines.append(f"| {name} | {v:.3g} | {'>=' if minimum else '<='} {bound:g} | {'yes' if met else 'no'} |")
    return "\n".join(lines)


def tables(r: dict) -> str:
    lines = ["Goals (issue 14):", "", goals(r), "","Inference (median of %d runs after a warm-up):" % r["repeat"], "",
             "| image | ijseg s | ijseg MP/s | StarDist s | StarDist MP/s | StarDist time / ijseg time | "
             "ijseg network / post-processing / measurements s | post-processing + measurements share | "
             "writing labels, table, ROIs s | objects ijseg / StarDist |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in r["inference"]:
        lines.append(f"| {row['size']}x{row['size']} | {row['ijseg_s']:.2f} | {row['ijseg_mp_s']:.2f} | "
                     f"{row['stardist_s']:.2f} | {row['stardist_mp_s']:.2f} | {row['ratio']:.2f} | "
                     f"{row['ijseg_network_s']:.2f} / {row['ijseg_postprocess_s']:.2f} / {row['ijseg_measure_s']:.2f}"
                     f" | {row['post_measure_share']:.2f} | {row['ijseg_write_s']:.2f} "
                     f"| {row['ijseg_objects']} / {row['stardist_objects']} |")
    if r.get("bundle"):
        b = r["bundle"]
        lines += ["", f"Bundle against model folder, one {b['size']}x{b['size']} image, max abs difference of the "
                  "probabilities:", "", "| weights | max abs difference |", "|---|---|"]
        lines += [f"| {k[len('max_abs_diff_'):]} | {v:.2g} |" for k, v in b.items() if k.startswith("max_abs_diff_")]
    if r.get("memory"):
        m = r["memory"]
        lines += ["", f"`ijseg predict` on one {m['size']}x{m['size']} image: peak RSS {m['peak_rss_gb']:.2f} GB, "
                  f"{m['wall_s']:.1f} s for the whole process."]
    f = r["roofline"]
    lines += ["", "U-Net forward pass against the matmul peak (1024x1024 input; float32: medians of runs that "
              "alternate the network and the matmul, the ratio the median of the pairs):", "",
              "| quantity | float32 | bfloat16 (mixed precision) |", "|---|---|---|",
              f"| matmul 2048x2048, TensorFlow, GFLOP/s | {f['matmul_tf_gflops']:.1f} | {f['matmul_bf16_gflops']:.1f} |",
              f"| matmul 2048x2048, numpy, GFLOP/s | {f['matmul_numpy_gflops']:.1f} | |",
              f"| U-Net ({f['unet_params'] / 1e6:.2f} M parameters, {f['unet_gflop_per_mpx']:.1f} GFLOP/MP) s | "
              f"{f['unet_s_1024']:.2f} | {f['unet_bf16_s_1024']:.2f} |",
              f"| U-Net GFLOP/s | {f['unet_gflops']:.1f} | {f['unet_bf16_gflops']:.1f} |",
              f"| U-Net / TensorFlow float32 matmul | {f['fraction_of_tf_matmul']:.2f} "
              f"({', '.join(f'{v:.2f}' for v in f.get('fractions', []))}) | "
              f"{f['unet_bf16_gflops'] / f['matmul_tf_gflops']:.2f} |"]
    if "keras_s_1024" in f:
        lines += [f"| the Keras model itself (before the inference graph) s, GFLOP/s, / matmul | "
                  f"{f['keras_s_1024']:.2f}, {f['keras_gflops']:.1f}, {f['keras_fraction_of_tf_matmul']:.2f} | |",
                  f"| inference graph against the Keras model, max abs difference | "
                  f"{f['inference_against_keras_max_abs_diff']:.2g} | |"]
    lines += [
              f"| max abs difference of the outputs (bfloat16 Keras model against float32) | | "
              f"{f['bf16_max_abs_diff']:.3g} |"]
    t = r["training_step"]
    lines += ["", "Training step of the default U-Net (batch 8 of 256x256, `train_on_batch`, median):", "",
              "| policy | s/step | patches/s |", "|---|---|---|"]
    for label in ("float32", "default"):
        lines.append(f"| {t[label]['policy']} ({'before' if label == 'float32' else 'after: default auto'}) | "
                     f"{t[label]['step_s']:.2f} | {t[label]['patches_per_s']:.2f} |")
    s = r["startup"]
    lines += ["", "Start-up (fresh processes, median):", "", "| what | s |", "|---|---|",
              f"| `python -c 'import ijseg'` | {s['import_ijseg_s']:.2f} |",
              f"| `ijseg --help` | {s['ijseg_help_s']:.2f} |",
              f"| `ijseg predict` one 256x256 image, whole process | {s['ijseg_predict_one_image_s']:.2f} |",
              f"| the same image in a running process | {s['in_process_one_image_s']:.3f} |"]
    if r.get("training"):
        lines += ["", "Training throughput (from the accuracy runs, whole loop with augmentation and validation):", "",
                  "| dataset | budget min | method | patches/s | patch | batch |", "|---|---|---|---|---|---|"]
        for t in r["training"]:
            p = t.get("patch", 256)
            lines.append(f"| {t['dataset']} | {t.get('minutes', 8):g} | {t['method']} | {t['patches_per_s']:.2f} "
                         f"| {p}x{p} | {t['batch']} |")
    if r.get("bridge"):
        b = r["bridge"]
        lines += ["", f"ImageJ bridge, {b['n']} images 256x256:", "", "| path | wall s | s/image |", "|---|---|---|",
                  f"| `ijseg predict` | {b['predict_s']:.1f} | {b['predict_s'] / b['n']:.3f} |",
                  f"| `ijseg macro run batch_segment.ijm` | {b['macro_s']:.1f} | {b['macro_s'] / b['n']:.3f} |",
                  f"| JVM + ImageJ + Xvfb start (empty macro) | {b['start_s']:.1f} | |",
                  f"| ratio macro / predict (median of {b.get('repeat', 1)} pairs) "
                  f"| {b.get('ratio', b['macro_s'] / b['predict_s']):.2f} | |"]
    return "\n".join(lines)


def main(argv=None) -> int:
    work = REPO / "bench" / "work" / "dsb2018_dev"
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ijseg-model", type=Path, default=work / "ijseg-3class")
    ap.add_argument("--stardist-model", type=Path, default=work / "stardist")
    ap.add_argument("--sizes", default="512,2048")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--bridge-images", type=int, default=100, help="0 skips the bridge benchmark")
    ap.add_argument("--memory", type=int, default=8192, help="side of the peak-memory image (0 skips it)")
    ap.add_argument("--no-bundle", dest="bundle", action="store_false",
                    help="skip the bundle against folder check (exports the model)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "speed.json")
    args = ap.parse_args(argv)
    for m in (args.ijseg_model, args.stardist_model):
        if not m.is_dir():
            ap.error(f"{m}: no model; run bench/accuracy.py --dataset dsb2018 first or give --ijseg-model/--stardist-model")
    import ijseg._tf as itf
    from ijseg._fileio import atomic_write_text

    itf.import_tf()
    r = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "repeat": args.repeat,
         "cpu": _cpu(), "cores": os.cpu_count()}
    r["inference"] = inference(args.ijseg_model, args.stardist_model, [int(s) for s in args.sizes.split(",")],
                               args.repeat)
    if args.bundle:
        r["bundle"] = bundle_agreement(args.ijseg_model)
    if args.memory:
        r["memory"] = peak_memory(args.ijseg_model, args.memory)
    r["roofline"] = roofline(args.ijseg_model, args.repeat)
    r["training_step"] = training_step(args.repeat)
    r["startup"] = startup(args.ijseg_model, args.repeat)
    r["training"] = []
    for f in sorted((REPO / "bench" / "results").glob("accuracy-*.json")):
        acc = json.loads(f.read_text())
        for m, v in acc["methods"].items():
            r["training"].append({"dataset": acc["dataset"], "minutes": acc["minutes"], "method": m,
                                  "patches_per_s": v["patches_per_s"], "batch": v.get("batch", 4 if m == "stardist" else 8),
                                  "patch": v.get("patch", 256)})
    if args.bridge_images:
        r["bridge"] = bridge(args.ijseg_model, args.bridge_images)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(r, indent=2) + "\n")
    print()
    print(tables(r))
    print(f"\nresults in {args.out}")
    return 0


def _cpu() -> str:
    from accuracy import _cpu_model

    return _cpu_model()


if __name__ == "__main__":
    sys.exit(main())
