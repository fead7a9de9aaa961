"""The one place that imports TensorFlow/Keras and deals with versions and devices.

Nothing else in ijseg imports TensorFlow at module level, so ``import ijseg`` stays fast and
the ImageJ bridge can start without it. This module sets no environment variable: the ``ijseg``
command line (:func:`ijseg.cli.main`), which owns its process, asks for a quiet TensorFlow with
``TF_CPP_MIN_LOG_LEVEL=2``; a program that uses ijseg as a library keeps its own settings.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator

from ._gc import loading
from ._stderr import quiet_fd2
from .errors import IjsegError

__all__ = ["import_tf", "device_summary", "dtype_policy", "policy_name", "gpus", "cpu_has_bf16"]

log = logging.getLogger(__name__)

_INSTALL_HINT = "pip install tensorflow-cpu==2.21.0 keras==3.15.1  (or the GPU build: pip install tensorflow)"
_configured = False


def _wants_quiet() -> bool:
    """Whether the process asked TensorFlow for errors only (``TF_CPP_MIN_LOG_LEVEL`` 2 or 3)."""
    if os.environ.get("IJSEG_TF_VERBOSE"):
        return False
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0")) >= 2
    except ValueError:
        return False


@contextlib.contextmanager
def _quiet_fd2() -> Iterator[None]:
    """Hide what TensorFlow's C++ side writes to stderr while it is imported, when the process
    asked for a quiet TensorFlow (:func:`_wants_quiet`).

    TF 2.21 logs oneDNN/CPU-feature notices before its logging is initialised, so
    ``TF_CPP_MIN_LOG_LEVEL`` alone cannot silence them. Set ``IJSEG_TF_VERBOSE=1`` to see them.
    Python exceptions are unaffected: they are raised after stderr is restored.
    """
    if not _wants_quiet():
        yield
        return
    with quiet_fd2():
        yield


def import_tf():
    """Import TensorFlow and Keras 3 quietly, configure GPUs once, and return ``(tf, keras)``.

    Raises
    ------
    IjsegError
        If TensorFlow or Keras 3 is not installed, with the install command.
    """
    global _configured
    # TensorFlow's modules live until the process ends (see ijseg._gc)
    new = "tensorflow" not in sys.modules
    first = loading() if new else contextlib.nullcontext()
    try:
        with _quiet_fd2() if new else contextlib.nullcontext(), first:
            import tensorflow as tf_
            import keras as keras_
    except ImportError as err:
        raise IjsegError(f"TensorFlow is required for this command but cannot be imported ({err}); {_INSTALL_HINT}") from err
    if int(keras_.__version__.split(".")[0]) < 3:
        raise IjsegError(f"ijseg needs Keras 3, found keras {keras_.__version__}; {_INSTALL_HINT}")
    if keras_.backend.backend() != "tensorflow":
        raise IjsegError(
            f"ijseg needs the Keras TensorFlow backend, but KERAS_BACKEND is {keras_.backend.backend()!r}"
        )
    if not _configured:
        _configured = True
        for gpu in tf_.config.list_physical_devices("GPU"):
            with contextlib.suppress(RuntimeError):  # already initialised
                tf_.config.experimental.set_memory_growth(gpu, True)
    return tf_, keras_


def gpus() -> list[str]:
    """Names of the GPUs TensorFlow sees (empty on CPU-only machines)."""
    tf_, _ = import_tf()
    return [d.name for d in tf_.config.list_physical_devices("GPU")]


def device_summary() -> str:
    """One line saying where TensorFlow computes."""
    tf_, keras_ = import_tf()
    g = gpus()
    where = f"GPU ({', '.join(g)})" if g else f"CPU ({os.cpu_count()} cores)"
    return f"TensorFlow {tf_.__version__}, Keras {keras_.__version__}, computing on {where}"


def distribution_strategy():
    """``tf.distribute.MirroredStrategy`` over the GPUs where TensorFlow sees more than one
    (each step's batch split among them, the gradients summed), or over the logical CPU devices
    where a program has made several; None for a single device."""
    tf_, _ = import_tf()
    for kind in ("GPU", "CPU"):
        devices = [d.name for d in tf_.config.list_logical_devices(kind)]
        if len(devices) > 1:
            return tf_.distribute.MirroredStrategy(devices)
        if devices and kind == "GPU":
            return None
    return None


def cpu_has_bf16() -> bool:
    """Whether the CPU computes bfloat16 natively (AVX512-BF16 or AMX), where oneDNN makes
    bfloat16 convolutions faster than float32 ones."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def _gpu_has_tensor_cores() -> bool:
    tf_, _ = import_tf()
    for gpu in tf_.config.list_physical_devices("GPU"):
        cc = tf_.config.experimental.get_device_details(gpu).get("compute_capability")
        if cc is None or tuple(cc) < (7, 0):
            return False
    return bool(gpus())


def policy_name(mixed_precision: bool | str) -> str:
    """The Keras dtype policy for ``train_mixed_precision``.

    ``True``: ``mixed_float16`` on a GPU, ``mixed_bfloat16`` on a CPU. ``False``: ``float32``.
    ``"auto"``: mixed precision only where it is faster: a GPU with tensor cores (compute
    capability 7.0 or more), or a CPU with native bfloat16 (1.5x the training steps per second of
    float32 for the default network on a 2-core AVX512-BF16 machine, see BENCHMARKS.md).
    """
    if mixed_precision == "auto":
        if gpus():
            return "mixed_float16" if _gpu_has_tensor_cores() else "float32"
        return "mixed_bfloat16" if cpu_has_bf16() else "float32"
    if not mixed_precision:
        return "float32"
    return "mixed_float16" if gpus() else "mixed_bfloat16"


@contextlib.contextmanager
def dtype_policy(mixed_precision: bool | str) -> Iterator[str]:
    """Build layers under the policy :func:`policy_name` gives.

    The global Keras policy is restored afterwards; layers keep the policy they were built with.
    """
    _, keras_ = import_tf()
    old = keras_.mixed_precision.global_policy()
    name = policy_name(mixed_precision)
    keras_.mixed_precision.set_global_policy(name)
    try:
        yield name
    finally:
        keras_.mixed_precision.set_global_policy(old)

