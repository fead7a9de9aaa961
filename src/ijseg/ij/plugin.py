"""The IJSeg ImageJ plugin: Java sources shipped with ijseg, compiled here against ImageJ.

The sources (``ijseg/ij/java``) are compiled with the system ``javac`` against the ImageJ jar
in use (``--release 8``, so the jar also runs in a Fiji on Java 8) and packed with their
``plugins.config`` as ``ijseg_.jar`` (the underscore makes ImageJ load it as a plugin jar). The
jar is cached in ``$IJSEG_CACHE`` (default ``~/.cache/ijseg``) under a hash of the sources and
the ImageJ jar, so it is built once, at set-up, and rebuilt only when either changes.

The cache folder doubles as the ImageJ home of the embedded backend: ``HOME/plugins/ijseg_.jar``
is what ImageJ's menus find when the JVM is started with ``-Dplugins.dir=HOME``.

Run ``python -m ijseg.ij.plugin`` to build it and print its path.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from importlib import resources
from pathlib import Path

from ..errors import IjsegError
from ._jars import find_ij_jar, find_java_tool

__all__ = ["JAR_NAME", "sources", "plugin_home", "build_plugin"]

log = logging.getLogger(__name__)

#: the file name ImageJ needs: a jar with an underscore in its name is scanned for plugins.config
JAR_NAME = "ijseg_.jar"


def _java_root() -> Path:
    return Path(str(resources.files("ijseg.ij") / "java"))


def sources() -> list[Path]:
    """The Java sources of the plugin, sorted."""
    return sorted(_java_root().rglob("*.java"))


def _cache_dir() -> Path:
    base = os.environ.get("IJSEG_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache",
                                                         "ijseg")
    return Path(base)


def _fingerprint(ij_jar: Path) -> str:
    h = hashlib.sha256()
    root = _java_root()
    for path in [*sources(), root / "plugins.config"]:
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    st = Path(ij_jar).stat()
    h.update(f"{Path(ij_jar).resolve()}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def plugin_home(ij_jar: str | os.PathLike) -> Path:
    """The ImageJ home folder holding ``plugins/ijseg_.jar`` built against ``ij_jar`` (built
    if missing)."""
    home = _cache_dir() / f"imagej-{_fingerprint(Path(ij_jar))}"
    jar = home / "plugins" / JAR_NAME
    if not jar.is_file():
        build_plugin(ij_jar, jar)
    return home


def build_plugin(ij_jar: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Compile the plugin against ``ij_jar`` and write the jar to ``out`` (atomically).

    Raises
    ------
    IjsegError
        Without ``javac`` (a JDK), or when compilation fails (with javac's message).
    """
    from .._fileio import atomic_path

    javac = find_java_tool("javac")
    if javac is None:
        raise IjsegError("javac not found: the IJSeg plugin is compiled at set-up; install a JDK "
                         "(apt-get install default-jdk-headless) or set JAVA_HOME")
    out = Path(out)
    root = _java_root()
    with tempfile.TemporaryDirectory(prefix="ijseg-javac-") as tmp:
        cmd = [javac, "-encoding", "UTF-8", "--release", "8", "-Xlint:-options", "-nowarn",
               "-cp", str(ij_jar), "-d", tmp, *map(str, sources())]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise IjsegError(f"compiling the IJSeg plugin against {ij_jar} failed:\n{proc.stderr.strip()}")
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp_jar, zipfile.ZipFile(tmp_jar, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\nCreated-By: ijseg\n")
            z.write(root / "plugins.config", "plugins.config")
            for cls in sorted(Path(tmp).rglob("*.class")):
                z.write(cls, cls.relative_to(tmp).as_posix())
    log.info("built %s", out)
    return out


def main() -> int:  # pragma: no cover - a set-up helper, exercised by scripts/setup.sh

    jar = find_ij_jar()
    if jar is None:
        print("ImageJ not found (apt-get install imagej, or set FIJI_HOME / IJSEG_IJ_JAR)", file=sys.stderr)
        return 1
    try:
        home = plugin_home(jar)
    except IjsegError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(home / "plugins" / JAR_NAME)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
