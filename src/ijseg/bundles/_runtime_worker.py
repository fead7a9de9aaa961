"""Run one weight file of a bundle in the Python environment of an old runtime.

Started by :mod:`ijseg.bundles.check` with that environment's interpreter (Python 3.9, numpy and
the runtime only: nothing of ijseg is imported), so it stays compatible with Python 3.9:

    python _runtime_worker.py FORMAT WEIGHTS INPUT.npy OUTPUT.npy INPUT_KEY OUTPUT_KEY

It loads the weights the way deepImageJ's Java engines do (TensorFlow: a session on the
SavedModel with tag ``serve`` and the ``serving_default`` signature, tensors looked up by their
rdf names; ONNX: one session, inputs by position), runs the pre-processed test input, saves the
output and prints one JSON line: ``{"version": ..., "seconds": ...}``.
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _tensorflow(model, x, input_key, output_key):
    import tensorflow as tf

    graph = tf.Graph()
    with tf.compat.v1.Session(graph=graph) as sess:
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], model)
        sig = meta.signature_def["serving_default"]
        y = sess.run(sig.outputs[output_key].name, {sig.inputs[input_key].name: x})
    return y, tf.__version__


def _onnx(model, x, input_key, output_key):
    import os

    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # onnxruntime >= 1.30 on Linux: no usage telemetry
    import onnxruntime as ort

    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    (y,) = sess.run([sess.get_outputs()[0].name], {sess.get_inputs()[0].name: x})
    return y, ort.__version__


def main(argv):
    import numpy as np

    fmt, model, inp, out, input_key, output_key = argv
    x = np.load(inp).astype(np.float32)
    t0 = time.perf_counter()
    run = _tensorflow if fmt == "tensorflow_saved_model_bundle" else _onnx
    y, version = run(model, x, input_key, output_key)
    np.save(out, np.asarray(y, dtype=np.float32))
    print(json.dumps({"version": version, "seconds": round(time.perf_counter() - t0, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
