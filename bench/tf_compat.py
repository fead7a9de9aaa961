"""Does a bundle's TensorFlow SavedModel load and agree in an older TensorFlow?

deepImageJ runs TensorFlow 2.7-2.10 through Java, while ijseg trains and exports with TF 2.21.
Those versions have no wheels for this Python, so this check uses the oldest TensorFlow that
pip installs here (default 2.12.0), in its own virtual environment: it loads the bundle's
SavedModel there (tag ``serve``, signature ``serving_default``), feeds the bundle's test input
normalised as the bundle says (``scale_range``), and compares the result with the bundle's
test output.

    python bench/tf_compat.py --bundle demo/bundle.zip [--tf 2.12.0] [--venv .venv-tf-compat]

Prints a one-line table and exits 0 when the maximum absolute difference is below 1e-4.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

CHECK = r'''
import json, sys, zipfile, tempfile, numpy as np, yaml
import tensorflow as tf
bundle = sys.argv[1]
with zipfile.ZipFile(bundle) as z, tempfile.TemporaryDirectory() as tmp:
    z.extractall(tmp)
    rdf = yaml.safe_load(open(f"{tmp}/rdf.yaml"))
    sm = rdf["weights"]["tensorflow_saved_model_bundle"]["source"]
    with zipfile.ZipFile(f"{tmp}/{sm}") as zz:
        zz.extractall(f"{tmp}/sm")
    inp, out = rdf["inputs"][0], rdf["outputs"][0]
    x = np.load(f"{tmp}/{inp['test_tensor']['source']}").astype(np.float32)
    expected = np.load(f"{tmp}/{out['test_tensor']['source']}")
    axes = [a.get("id", a["type"]) for a in inp["axes"]]
    for op in inp.get("preprocessing", []):
        if op["id"] == "scale_range":
            k = op["kwargs"]
            red = tuple(axes.index(a) for a in k["axes"])
            lo = np.percentile(x, k["min_percentile"], axis=red, keepdims=True)
            hi = np.percentile(x, k["max_percentile"], axis=red, keepdims=True)
            x = ((x - lo) / (hi - lo + float(k.get("eps", 1e-6)))).astype(np.float32)  # YAML 1.1 reads 1e-06 as text
    model = tf.saved_model.load(f"{tmp}/sm", tags=["serve"])
    sig = model.signatures["serving_default"]
    y = sig(**{inp["id"]: tf.constant(x)})[out["id"]].numpy()
    print(json.dumps({"tensorflow": tf.__version__, "max_abs_diff": float(np.abs(y - expected).max()),
                      "shape": list(y.shape)}))
'''


def ensure_venv(venv: Path, tf_version: str) -> Path:
    py = venv / "bin" / "python"
    stamp = venv / ".tf-version"
    if py.is_file() and stamp.is_file() and stamp.read_text().strip() == tf_version:
        return py
    if not py.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    print(f"installing tensorflow-cpu=={tf_version} into {venv} ...", file=sys.stderr)
    subprocess.run([str(py), "-m", "pip", "install", "-q", f"tensorflow-cpu=={tf_version}", "numpy<2", "pyyaml"],
                   check=True)
    stamp.write_text(tf_version)
    return py


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True, type=Path, help="bundle zip written by 'ijseg export'")
    ap.add_argument("--tf", default="2.12.0", help="TensorFlow version to check (default 2.12.0, the oldest for Python 3.11)")
    ap.add_argument("--venv", type=Path, default=Path(".venv-tf-compat"), help="virtual environment for that version")
    args = ap.parse_args(argv)
    with zipfile.ZipFile(args.bundle) as z:
        if not any(n.endswith(".zip") for n in z.namelist()):
            print(f"{args.bundle}: no zipped SavedModel in this bundle", file=sys.stderr)
            return 2
    py = ensure_venv(args.venv, args.tf)
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(CHECK)
    r = subprocess.run([str(py), f.name, str(args.bundle)], capture_output=True, text=True,
                       env={"TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin:/bin"})
    Path(f.name).unlink()
    if r.returncode != 0:
        err = r.stderr.strip().splitlines()
        print(f"| TensorFlow {args.tf} | SavedModel does NOT load | {err[-1] if err else 'unknown error'} |")
        return 1
    res = json.loads(r.stdout.strip().splitlines()[-1])
    ok = res["max_abs_diff"] < 1e-4
    print("| TensorFlow | bundle | loads | max abs difference to test output | verdict |")
    print("|---|---|---|---|---|")
    print(f"| {res['tensorflow']} | {args.bundle.name} | yes | {res['max_abs_diff']:.2e} | {'OK' if ok else 'MISMATCH'} |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
