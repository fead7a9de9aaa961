"""`ijseg check`: the bundle's weights in deepImageJ's own runtimes (TF 2.7.0, 2.10.1, onnxruntime 1.12.1).

Marked ``compat``: its own pytest run in ``make test``. The first run builds Python 3.9
environments with those runtimes under ~/.cache/ijseg/runtimes (a download); later runs reuse them.
"""

from __future__ import annotations

import pytest

from ijseg.cli import main

pytestmark = pytest.mark.compat


@pytest.mark.parametrize("which", ["0.5", "0.4", "3d"])
def test_every_runtime_reproduces_the_test_output(which, request, capsys):
    """deepImageJ's TensorFlow and ONNX runtimes run the bundle's network on its test input; for
    a 3-D model (axes b z y x c) too: Conv3D, 3-D pooling and transposed convolutions."""
    bundle = request.getfixturevalue({"0.5": "tiny_bundle", "0.4": "tiny_bundle_04", "3d": "tiny_bundle3d"}[which])
    code = main(["-q", "check", str(bundle), "--no-bioimageio"])
    out = capsys.readouterr().out
    assert code == 0, out
    for name in ("tensorflow 2.7.0", "tensorflow 2.10.1", "onnxruntime 1.12.1", "deepImageJ rules"):
        row = next(line for line in out.splitlines() if line.startswith(name))
        assert " ok " in row, row
    if which == "0.4":
        assert "ImageJ macro" in out and "scale_range.ijm" in out


def test_check_reports_a_broken_bundle(tmp_path, tiny_bundle, capsys):
    import zipfile

    d = tmp_path / "b"
    zipfile.ZipFile(tiny_bundle).extractall(d)
    (d / "model.onnx").write_bytes(b"not onnx")
    code = main(["-q", "check", str(d), "--no-bioimageio", "--runtime", "onnxruntime-1.12.1"])
    out = capsys.readouterr().out
    assert code == 1 and "FAIL fails to load/run" in out
    assert main(["-q", "check", str(tmp_path / "missing.zip")]) == 1
    assert "no such bundle" in capsys.readouterr().err
