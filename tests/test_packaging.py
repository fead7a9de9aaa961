"""Set-up files stay in step with each other; the package imports cheaply."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

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
