"""Set-up files stay in step with each other; the package imports cheaply."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from conftest import REPO


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def _pins(lines):
    found = (re.match(r"^\s*-?\s*([A-Za-z0-9_.\-]+)==(\S+)", line) for line in lines)
    return {_norm(m.group(1)): m.group(2) for m in found if m}


def test_environment_yml_pins_equal_requirements():
    req = _pins((REPO / "requirements.txt").read_text().splitlines())
    env = _pins((REPO / "environment.yml").read_text().splitlines())
    assert req == env


def test_lock_agrees_with_requirements():
    req = _pins((REPO / "requirements.txt").read_text().splitlines())
    lock = _pins((REPO / "requirements.lock").read_text().splitlines())
    assert {k: lock.get(k) for k in req} == req


def test_pyproject_dependencies_are_pinned_in_requirements():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {_norm(re.split(r"[<>=;! ]", d, maxsplit=1)[0]) for d in deps}
    req = set(_pins((REPO / "requirements.txt").read_text().splitlines()))
    assert names <= req, names - req


def test_import_is_cheap_and_loads_no_tensorflow_or_jvm():
    code = "import sys, ijseg; ijseg.Config; print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'jpype', 'scyjava', 'imagej')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_wheel_ships_macros_and_scripts(tmp_path, tiny_model):
    """From an installed wheel (not the source tree), export --format 0.4 and fiji install find
    macros/ and fiji_scripts/."""
    import site
    import sysconfig
    import zipfile

    from test_fiji import _fake_fiji

    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist"), str(REPO)], check=True, capture_output=True, timeout=600)
    (wheel,) = (tmp_path / "dist").glob("ijseg-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"ijseg/macros/scale_range.ijm", "ijseg/macros/3class_to_instances.ijm",
            "ijseg/fiji_scripts/batch_segment.ijm", "ijseg/bundles/_runtime_worker.py"} <= names
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   capture_output=True, timeout=300)
    # the dependencies come from this environment, appended after the fresh venv's own site-packages
    # (a plain path line: this environment's editable ijseg finder is not activated)
    fresh_site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                capture_output=True, text=True, check=True).stdout.strip()
    (Path(fresh_site) / "deps.pth").write_text("\n".join(site.getsitepackages() + [sysconfig.get_paths()["purelib"]]))
    env = {**__import__("os").environ, "PYTHONNOUSERSITE": "1"}
    where = subprocess.run([str(py), "-c", "import ijseg, ijseg._resources as r; print(ijseg.__file__); "
                            "print(r.asset_dir('macros'))"], capture_output=True, text=True, env=env, check=True)
    assert str(venv) in where.stdout and str(REPO / "macros") not in where.stdout, where.stdout
    ijseg = [str(py), "-m", "ijseg", "-q"]
    r = subprocess.run(ijseg + ["export", "--model", str(tiny_model), "--out", str(tmp_path / "b04.zip"),
                                "--format", "0.4", "--weights", "onnx"], capture_output=True, text=True, env=env,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert {"scale_range.ijm", "3class_to_instances.ijm"} <= set(zipfile.ZipFile(tmp_path / "b04.zip").namelist())
    app = _fake_fiji(tmp_path)
    r = subprocess.run(ijseg + ["fiji", "install", str(app)], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (app / "macros" / "ijseg" / "scale_range.ijm").is_file()
    assert (app / "scripts" / "Plugins" / "IJSeg" / "batch_segment.ijm").is_file()
