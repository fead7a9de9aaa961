"""`ijseg fiji install` on a fake Fiji.app, and the checks of the Fiji backend (no JVM needed)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ijseg.ij._jars import DEBIAN_IJ_JAR
from ijseg.errors import ConfigError
from ijseg.ij.fiji import check_fiji

IJSEG = str(Path(sys.executable).with_name("ijseg"))
needs_javac = pytest.mark.skipif(shutil.which("javac") is None or not DEBIAN_IJ_JAR.is_file(),
                                 reason="needs javac and Debian's ImageJ (make setup installs them)")


def _fake_fiji(root: Path) -> Path:
    app = root / "Fiji.app"
    (app / "jars").mkdir(parents=True)
    (app / "plugins").mkdir()
    shutil.copyfile(DEBIAN_IJ_JAR, app / "jars" / "ij-1.53t.jar")
    return app


def test_check_fiji_names_what_is_missing(tmp_path):
    with pytest.raises(ConfigError, match="Fiji folder not found"):
        check_fiji(tmp_path / "nope")
    with pytest.raises(ConfigError, match="no jars/ folder"):
        check_fiji(tmp_path)
    (tmp_path / "jars").mkdir()
    with pytest.raises(ConfigError, match="no ImageJ 1.x jar"):
        check_fiji(tmp_path)
    (tmp_path / "jars" / "ij-1.54f.jar").write_bytes(b"")
    with pytest.raises(ConfigError, match="no plugins/ folder"):
        check_fiji(tmp_path)
    (tmp_path / "plugins").mkdir()
    assert check_fiji(tmp_path) == tmp_path


@needs_javac
def test_fiji_install_writes_plugin_macros_and_scripts(tmp_path):
    app = _fake_fiji(tmp_path)
    proc = subprocess.run([IJSEG, "fiji", "install", str(app)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    with zipfile.ZipFile(app / "plugins" / "ijseg_.jar") as z:
        names = set(z.namelist())
        config = z.read("plugins.config").decode()
    assert {"ijseg/PredictCommand.class", "ijseg/CommandLineEngine.class", "plugins.config"} <= names
    assert 'Plugins>IJSeg, "IJSeg Predict", ijseg.PredictCommand' in config
    props = (app / "plugins" / "ijseg.properties").read_text()
    exe = props.split("executable=")[1].strip()
    assert Path(exe).is_file() and Path(exe).name == "ijseg"
    assert (app / "macros" / "ijseg" / "segment_and_measure.ijm").is_file()
    assert (app / "scripts" / "Plugins" / "IJSeg" / "batch_segment.ijm").is_file()
    assert not list(app.rglob("*.tmp*"))  # nothing half-written left behind
    again = subprocess.run([IJSEG, "fiji", "install", str(app)], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0  # idempotent


def test_fiji_install_refuses_a_non_fiji_folder(tmp_path):
    proc = subprocess.run([IJSEG, "fiji", "install", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"ijseg fiji: error: {tmp_path}: not a Fiji.app folder (no jars/ folder)"
