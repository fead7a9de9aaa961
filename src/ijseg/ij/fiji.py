"""The Fiji backend: a user's Fiji.app through PyImageJ, and installing ijseg into a Fiji.

PyImageJ needs ImageJ2 jars, which only a real Fiji.app has (Maven is not reachable from
ijseg's build machines, so this path is exercised by users, not by the test suite). This layer
is deliberately thin: check the folder, start ``imagej.init(app, mode=...)`` offline, register
the ijseg engine; if that fails, say why and continue with the embedded backend on the Fiji's
own ImageJ 1.x jar (``jars/ij-*.jar``), where the IJSeg commands and macros work the same.

:func:`install` copies the IJSeg plugin jar, ``macros/`` and ``fiji_scripts/`` into a Fiji.app,
and writes ``plugins/ijseg.properties`` with the ``ijseg`` executable, so that the commands
work in that Fiji when it runs on its own.

Process state: :func:`start_fiji` is a bridge start, the one place of this backend that changes
process-wide settings: scyjava's configuration (no Maven endpoints, the IJSeg jar on the class
path) and ``JAVA_HOME`` for the duration of PyImageJ's start only (restored afterwards). The
embedded fallback starts the JVM through JPype (:func:`ijseg.ij._java.start_jvm`), so the JVM
start hooks that importing pyimagej registered with scyjava (they need imglyb's jars, which only
a real Fiji has) do not run.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

from ..errors import ConfigError, IjsegError
from ._jars import find_ij_jar, system_java_home

__all__ = ["check_fiji", "start_fiji", "install", "repo_assets"]

log = logging.getLogger(__name__)


def check_fiji(path: str | os.PathLike) -> Path:
    """The Fiji.app folder ``path``, checked: it must hold ``jars/ij-*.jar`` and ``plugins/``.

    Raises
    ------
    ConfigError
        Naming what is missing.
    """
    app = Path(path).expanduser()
    if not app.is_dir():
        raise ConfigError(f"{app}: Fiji folder not found")
    if not (app / "jars").is_dir():
        raise ConfigError(f"{app}: not a Fiji.app folder (no jars/ folder)")
    if not sorted((app / "jars").glob("ij-*.jar")) and not (app / "jars" / "ij.jar").is_file():
        raise ConfigError(f"{app}: no ImageJ 1.x jar in {app / 'jars'} (expected ij-1.xx.jar)")
    if not (app / "plugins").is_dir():
        raise ConfigError(f"{app}: not a Fiji.app folder (no plugins/ folder)")
    return app


def start_fiji(path: str | os.PathLike, mode: str = "interactive"):
    """Start the Fiji at ``path`` through PyImageJ; returns its gateway, or None after falling
    back to the embedded backend (with a warning saying why)."""
    import jpype

    from ._java import adopt_running_jvm, start_jvm
    from .engine import install_engine

    app = check_fiji(path)
    try:
        import imagej
        import scyjava

        scyjava.config.endpoints.clear()
        from .plugin import JAR_NAME, plugin_home

        with system_java_home():
            scyjava.config.add_classpath(str(plugin_home(find_ij_jar(app)) / "plugins" / JAR_NAME))
            ij = imagej.init(str(app), mode=mode)
    except Exception as err:  # PyImageJ raises many kinds; all mean "no Fiji here"
        log.warning("Fiji at %s did not start through PyImageJ (%s: %s); using its ImageJ 1.x jar with the embedded "
                    "backend instead", app, type(err).__name__, str(err).splitlines()[0] if str(err) else "")
        if jpype.isJVMStarted():
            adopt_running_jvm()
        else:
            start_jvm(fiji=app)
        return None
    install_engine()
    log.info("Fiji %s started through PyImageJ (%s mode)", app, mode)
    return ij


def repo_assets() -> dict[str, Path]:
    """The ``macros/`` and ``fiji_scripts/`` folders shipped with ijseg (those that exist)."""
    from .._resources import asset_dir

    return {name: asset_dir(name) for name in ("macros", "fiji_scripts")}


def install(path: str | os.PathLike, *, executable: str | None = None) -> dict[str, Path]:
    """Install ijseg into the Fiji.app at ``path``.

    Writes ``plugins/ijseg_.jar`` (the IJSeg menu, built against that Fiji's ImageJ jar),
    ``plugins/ijseg.properties`` (``executable=`` the ijseg command line), ``macros/ijseg/``
    and ``scripts/Plugins/IJSeg/`` (the Fiji scripts, which then appear in Plugins > IJSeg).
    Every file is written under a temporary name and renamed.

    Returns
    -------
    dict
        What was written: ``jar``, ``properties``, ``macros``, ``scripts``.
    """
    from .._fileio import atomic_path, atomic_write_text
    from .plugin import JAR_NAME, build_plugin

    app = check_fiji(path)
    exe = executable or shutil.which("ijseg") or str(Path(sys.executable).with_name("ijseg"))
    if not Path(exe).is_file():
        raise IjsegError(f"the ijseg command line was not found ({exe}); give its path", options=("executable",))
    written: dict[str, Path] = {}
    written["jar"] = build_plugin(find_ij_jar(app), app / "plugins" / JAR_NAME)
    props = app / "plugins" / "ijseg.properties"
    atomic_write_text(props, "# written by 'ijseg fiji install': the command line the IJSeg commands run\n"
                             f"executable={Path(exe).resolve().as_posix()}\n")
    written["properties"] = props
    targets = {"macros": app / "macros" / "ijseg", "fiji_scripts": app / "scripts" / "Plugins" / "IJSeg"}
    for name, src in repo_assets().items():
        dst = targets[name]
        for f in sorted(src.glob("*.ijm")):
            with atomic_path(dst / f.name) as tmp:
                shutil.copyfile(f, tmp)
        written["macros" if name == "macros" else "scripts"] = dst
    return written
