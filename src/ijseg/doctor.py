"""``ijseg doctor``: what ijseg finds on this machine (versions, Java, ImageJ, display, GPU)."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

__all__ = ["report", "find_ij_jar", "ij_jar_version", "java_version"]

#: where the Debian package ``imagej`` puts ImageJ 1.x
DEBIAN_IJ_JAR = Path("/usr/share/java/ij.jar")


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "not installed"


def java_version() -> str | None:
    """First line of ``java -version`` (``None`` if no Java is found)."""
    java = shutil.which("java")
    if java is None and os.environ.get("JAVA_HOME"):
        cand = Path(os.environ["JAVA_HOME"]) / "bin" / "java"
        java = str(cand) if cand.is_file() else None
    if java is None:
        return None
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (out.stderr or out.stdout).strip().splitlines()
    return f"{lines[0]} ({java})" if lines else java


def find_ij_jar(fiji: str | os.PathLike | None = None) -> Path | None:
    """The ImageJ 1.x jar: ``Fiji.app/jars/ij-*.jar`` if ``fiji`` (or ``FIJI_HOME``) is given,
    else ``IJSEG_IJ_JAR``, else Debian's ``/usr/share/java/ij.jar``."""
    fiji = fiji or os.environ.get("FIJI_HOME")
    if fiji:
        jars = sorted(Path(fiji).glob("jars/ij-*.jar")) + sorted(Path(fiji).glob("jars/ij.jar"))
        if jars:
            return jars[-1]
    env = os.environ.get("IJSEG_IJ_JAR")
    if env and Path(env).is_file():
        return Path(env)
    return DEBIAN_IJ_JAR if DEBIAN_IJ_JAR.is_file() else None


def ij_jar_version(jar: str | os.PathLike) -> str | None:
    """ImageJ's ``VERSION`` constant read from ``ij/ImageJ.class`` without starting a JVM.

    It is the only CONSTANT_Utf8 entry of the form ``1.NN`` + letter in that class.
    """
    try:
        data = zipfile.ZipFile(jar).read("ij/ImageJ.class")
    except (OSError, KeyError, zipfile.BadZipFile):
        return None
    found = re.findall(rb"\x01\x00.(1\.\d\d[a-z]?\d*)", data, flags=re.S)
    return found[0].decode() if found else None


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
    javac = shutil.which("javac")
    rows.append(("javac", javac or "not found: the IJSeg plugin cannot be built (apt-get install default-jdk-headless)"))
    fiji = os.environ.get("FIJI_HOME")
    rows.append(("fiji", fiji if fiji else "FIJI_HOME not set"))
    rows.append(("backend", _backend(jar, fiji, javac)))
    display = os.environ.get("DISPLAY")
    xvfb = shutil.which("Xvfb")
    rows.append(("display", display or ("none; Xvfb available for headless runs" if xvfb else "none, and no Xvfb (apt-get install xvfb)")))
    return rows
