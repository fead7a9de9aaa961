"""deepImageJ's rules (JDLL for 3.1, the plugin's own reader for 3.0.3) on the bundles ijseg writes."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import REPO
from ijseg._resources import macro_file
from ijseg.errors import ConfigError
from ijseg.bundles import deepimagej as dij
from ijseg.bundles import export_bundle
from ijseg.postprocess import PostprocessOptions
from ijseg.preprocess import PercentileNormalizer


def _unpack(bundle: Path, tmp: Path) -> Path:
    d = tmp / "b"
    with zipfile.ZipFile(bundle) as z:
        z.extractall(d)
    return d


def _edit(d: Path, fn) -> list[str]:
    rdf = yaml.safe_load((d / "rdf.yaml").read_text())
    fn(rdf)
    (d / "rdf.yaml").write_text(yaml.safe_dump(rdf, sort_keys=False))
    return dij.problems(d)


def test_exported_bundles_meet_every_rule(tiny_bundle, tiny_bundle_04):
    assert dij.problems(tiny_bundle) == []
    assert dij.problems(tiny_bundle_04) == []
    rdf = dij.read_rdf(zipfile.ZipFile(tiny_bundle).read("rdf.yaml"))  # as SnakeYAML reads it
    assert rdf["documentation"] == "README.md" and rdf["covers"] == ["cover.png"]
    assert rdf["format_version"] == "0.5.10"
    assert isinstance(rdf["weights"]["tensorflow_saved_model_bundle"]["tensorflow_version"], str)
    eps = [p for p in rdf["inputs"][0]["preprocessing"] if p["id"] == "scale_range"][0]["kwargs"]["eps"]
    assert isinstance(eps, float)  # YAML 1.1 reads 1e-06 as a string; the file says 1.0e-06


@pytest.mark.parametrize("edit, rule", [
    (lambda r: r.update(documentation={"source": "README.md", "sha256": "0" * 64}), "J2"),
    (lambda r: r.update(covers=[{"source": "cover.png"}]), "J4"),
    (lambda r: r.update(format_version=0.5), "J1"),
    (lambda r: r.pop("id"), "J3"),
    (lambda r: r.update(tags="unet"), "J5"),
    (lambda r: r["authors"][0].update(name=["x"]), "J6"),
    (lambda r: r["inputs"][0]["axes"][1].pop("type"), "J7"),
    (lambda r: r["inputs"][0]["axes"][3].pop("channel_names"), "J7"),
    (lambda r: r["inputs"][0]["preprocessing"].append({"id": "softmax"}), "J9"),
    (lambda r: r["inputs"][0]["preprocessing"][1]["kwargs"].update(percentile=3), "J9"),
    (lambda r: r["weights"]["tensorflow_saved_model_bundle"].update(tensorflow_version=2.1), "J10"),
    (lambda r: r["weights"]["onnx"].update(opset_version=18), "J10"),
    (lambda r: r["inputs"][0]["axes"][1]["size"].update(min=50), "J12"),
    (lambda r: r["outputs"][0]["axes"][1]["size"].update(offset=2), "J12"),
    (lambda r: r["inputs"][0]["test_tensor"].update(source="missing.npy"), "J11"),
    (lambda r: r.setdefault("config", {}).update(deepimagej={"allow_tiling": "true", "pyramidal_model": False,
                                                             "test_information": {}, "prediction": {}}), "J13"),
])
def test_each_jdll_rule_catches_its_problem(tiny_bundle, tmp_path, edit, rule):
    found = _edit(_unpack(tiny_bundle, tmp_path), edit)
    assert any(p.startswith(rule + ":") for p in found), found


@pytest.mark.parametrize("edit, rule", [
    (lambda r: r.update(name="cell segmentation with tiles"), "D1"),
    (lambda r: r.update(authors=[]), "D2"),
    (lambda r: r["weights"]["tensorflow_saved_model_bundle"].update(source="tf_saved_model.zip"), "D3"),
    (lambda r: r["inputs"][0].update(name="image"), "D3"),
    (lambda r: r["inputs"][0].update(axes="byx"), "D4"),
    (lambda r: r["outputs"][0]["shape"].update(offset=[0, 0, 0, 1.2]), "D4"),
    (lambda r: r["outputs"][0].update(halo=[0, 8, 8]), "D4"),
    (lambda r: r["config"]["deepimagej"]["test_information"].update(memory_peak=None), "D5"),
    (lambda r: r["config"]["deepimagej"]["prediction"]["preprocess"][0].update(kwargs="percentile_normalization.ijm"),
     "D5"),
])
def test_each_303_rule_catches_its_problem(tiny_bundle_04, tmp_path, edit, rule):
    d = _unpack(tiny_bundle_04, tmp_path)
    if rule == "D3" and "source" in str(edit.__code__.co_consts):
        shutil.copy(d / "tensorflow_saved_model_bundle.zip", d / "tf_saved_model.zip")
    found = _edit(d, edit)
    assert any(p.startswith(rule + ":") for p in found), found


def test_the_savedmodel_zip_needs_variables_at_its_root(tiny_bundle, tmp_path):
    d = _unpack(tiny_bundle, tmp_path)
    src = d / "tensorflow_saved_model_bundle.zip"
    with zipfile.ZipFile(src) as z:
        entries = {n: z.read(n) for n in z.namelist()}
    with zipfile.ZipFile(src, "w") as z:
        for n, data in entries.items():
            z.writestr("model/" + n, data)  # one folder level too deep
    assert any(p.startswith("J10:") and "saved_model.pb" in p for p in dij.problems(d))


def test_no_rdf(tmp_path):
    assert dij.problems(tmp_path) == ["J0: rdf.yaml is not at the bundle root (deepImageJ reads only that file name)"]


def test_04_export_refuses_names_that_break_303_macros(tiny_model, tmp_path):
    with pytest.raises(ConfigError, match="'tile'.* choose another name"):
        export_bundle(tiny_model, tmp_path / "b.zip", name="nuclei tiles", format_version="0.4")
    assert not (tmp_path / "b.zip").exists()


def test_docs_table_is_the_rules():
    text = (REPO / "docs" / "deepimagej.md").read_text()
    assert dij.rules_markdown() in text


def test_repository_macros_default_to_python_defaults():
    norm, pp = PercentileNormalizer(), PostprocessOptions()
    assert {k: float(v) for k, v in dij.macro_defaults(macro_file("scale_range.ijm").read_text()).items()} == \
        {"pmin": norm.pmin, "pmax": norm.pmax, "eps": norm.eps}
    assert float(dij.macro_defaults(macro_file("binarize.ijm").read_text())["threshold"]) == pp.threshold
    assert float(dij.macro_defaults(macro_file("3class_to_instances.ijm").read_text())["seed"]) == pp.seed_threshold
    with pytest.raises(KeyError, match="no default for pmax"):
        dij.render_macro(macro_file("binarize.ijm").read_text(), pmax=3)


def test_bundle_macros_and_lines_carry_the_model_parameters(tiny_model, tmp_path):
    out = export_bundle(tiny_model, tmp_path / "p.zip", format_version="0.4",
                        postprocess=PostprocessOptions(seed_threshold=0.65))
    with zipfile.ZipFile(out) as z:
        post = z.read("3class_to_instances.ijm").decode()
        readme = z.read("README.md").decode()
        rdf = dij.read_rdf(z.read("rdf.yaml"))
    assert dij.macro_defaults(post)["seed"] == "0.65"
    assert rdf["config"]["ijseg"]["postprocessing"]["seed_threshold"] == 0.65
    lines = dij.macro_lines(rdf, bundle_path=str(out))
    assert "seed=0.65" in lines["ijseg"] and lines["ijseg"] in readme
    line = lines["deepImageJ 3.0.3"]
    assert line in readme and lines["deepImageJ 3.1"] in readme
    assert f'model=[{rdf["name"]}] format=Tensorflow preprocessing=[scale_range.ijm] ' \
           f'postprocessing=[3class_to_instances.ijm] axes=Y,X,C tile=' in line
    # the 3.0.3 tile rules: (tile - min) % step == 0 and 2 * halo < tile, with keys in their order
    tile = int(line.split("tile=")[1].split(",")[0])
    shape, halo = rdf["inputs"][0]["shape"], rdf["outputs"][0]["halo"][1]
    assert (tile - shape["min"][1]) % shape["step"][1] == 0 and 2 * halo < tile
    assert [line.index(k + "=") for k in dij.MACRO_KEYS_303] == sorted(line.index(k + "=") for k in dij.MACRO_KEYS_303)
    assert np.isfinite(tile)
