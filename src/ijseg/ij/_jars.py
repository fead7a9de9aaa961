"""Where Java, javac and ImageJ 1.x's jar are on this machine (no JVM is started here)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["DEBIAN_IJ_JAR", "find_java_tool", "find_ij_jar", "ij_jar_version", "java_version", "system_java_home"]

#: where the Debian package ``imagej`` puts ImageJ 1.x
DEBIAN_IJ_JAR = Path("/usr/share/java/ij.jar")


def find_java_tool(name: str) -> str | None:
    """``java``/``javac`` on the PATH, else in ``JAVA_HOME/bin`` (None if neither has it)."""
    found = shutil.which(name)
    if found is None and os.environ.get("JAVA_HOME"):
        cand = Path(os.environ["JAVA_HOME"]) / "bin" / name
        found = str(cand) if cand.is_file() else None
    return found


@contextlib.contextmanager
def system_java_home() -> Iterator[None]:
    """``JAVA_HOME`` at the installation folder of the ``java`` on the PATH inside the block
    (unless it is set), restored afterwards, once the JVM runs.

    Without it scyjava sets ``JAVA_HOME`` to the folder above the PATH's ``bin`` (``/usr`` on
    Debian), where JPype then searches every subfolder for ``libjvm.so``, twice: 0.6-1.2 s of
    each ImageJ start. PyImageJ's ``fetch="auto"`` also uses this Java instead of downloading
    one (pyimagej 1.8 fails outright with ``fetch="never"``)."""
    java = shutil.which("java")
    if not java or os.environ.get("JAVA_HOME"):
        yield
        return
    os.environ["JAVA_HOME"] = str(Path(java).resolve().parents[1])
    try:
        yield
    finally:
        os.environ.pop("JAVA_HOME", None)


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


def java_version() -> str | None:
    """The version of the ``java`` that :func:`find_java_tool` finds (``java -version``, about
    50 ms), or None."""
    import subprocess

    java = find_java_tool("java")
    if java is None:
        return None
    try:
        text = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r'version "([^"]+)"', text)
    return found.group(1) if found else None
