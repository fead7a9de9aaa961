"""``ijseg doctor``: what ijseg finds on this machine (versions, Java, ImageJ, display, GPU)."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["report", "java_version", "find_ij_jar", "ij_jar_version", "DEBIAN_IJ_JAR"]

from .ij._jars import DEBIAN_IJ_JAR, find_ij_jar, find_java_tool, ij_jar_version


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "not installed"


def java_version() -> str | None:
    """First line of ``java -version`` (``None`` if no Java is found)."""
    java = find_java_tool("java")
    if java is None:
        return None
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (out.stderr or out.stdout).strip().splitlines()
    return f"{lines[0]} ({java})" if lines else java


def _backend(jar: Path | None, fiji: str | None, javac: str | None) -> str:
    """Which ImageJ ``ijseg macro`` / ``ijseg imagej`` would use, and where the IJSeg plugin is."""
    if fiji:
        kind = f"fiji ({fiji}) through PyImageJ for 'ijseg imagej', its ij jar embedded for macros"
    else:
        kind = "embedded ImageJ 1.x through JPype"
    if jar is None:
        return f"{kind}; no ImageJ found"
    if javac is None:
        return f"{kind}; IJSeg plugin not built (no javac)"
    from .ij.plugin import JAR_NAME, plugin_home

    try:
        plugin = plugin_home(jar) / "plugins" / JAR_NAME
    except Exception as err:  # doctor reports, it does not fail
        return f"{kind}; IJSeg plugin does not build: {str(err).splitlines()[0]}"
    return f"{kind}; IJSeg plugin {plugin}"


def report(*, with_tensorflow: bool = True) -> list[tuple[str, str]]:
    """Rows of (item, finding)."""
    rows: list[tuple[str, str]] = [
        ("ijseg", _version("ijseg")),
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("platform", f"{platform.platform()}, {os.cpu_count()} CPU cores"),
    ]
    for dist in ("numpy", "scikit-image", "tifffile", "tensorflow-cpu", "tensorflow", "keras", "stardist", "csbdeep",
                 "bioimageio.core", "bioimageio.spec", "scyjava", "jpype1", "pyimagej"):
        v = _version(dist)
        if dist == "tensorflow" and v == "not installed" and _version("tensorflow-cpu") != "not installed":
            continue
        rows.append((dist, v))
    if with_tensorflow:
        try:
            from ._tf import device_summary

            rows.append(("compute", device_summary()))
        except Exception as err:  # report, don't fail: doctor is for diagnosing exactly this
            rows.append(("compute", f"TensorFlow unusable: {err}"))
    jv = java_version()
    rows.append(("java", jv or "not found (install Java 17: apt-get install default-jdk-headless)"))
    jar = find_ij_jar()
    if jar is None:
        rows.append(("imagej", "ij.jar not found (apt-get install imagej, or set FIJI_HOME / IJSEG_IJ_JAR)"))
    else:
        rows.append(("imagej", f"ImageJ {ij_jar_version(jar) or '?'} ({jar.resolve()})"))
    javac = find_java_tool("javac")
    rows.append(("javac", javac or "not found: the IJSeg plugin cannot be built (apt-get install default-jdk-headless)"))
    fiji = os.environ.get("FIJI_HOME")
    rows.append(("fiji", fiji if fiji else "FIJI_HOME not set"))
    rows.append(("backend", _backend(jar, fiji, javac)))
    display = os.environ.get("DISPLAY")
    xvfb = shutil.which("Xvfb")
    rows.append(("display", display or ("none; Xvfb available for headless runs" if xvfb else "none, and no Xvfb (apt-get install xvfb)")))
    return rows
