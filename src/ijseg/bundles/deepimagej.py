"""What deepImageJ needs from a bundle: the rules, written down once and checked.

bioimageio.core is not deepImageJ's reader. deepImageJ 3.1 parses ``rdf.yaml`` with JDLL
(bioimage-io/JDLL, SnakeYAML, a YAML 1.1 parser) and casts every field to the Java type it
expects; deepImageJ 3.0.3 has a reader of its own and runs ``.ijm`` macros for pre- and
post-processing. Each :class:`Rule` below names the source file where the behaviour was read
(JDLL tag ``dl-modelrunner-0.6.1``, which deepImageJ 3.1 uses; deepimagej-plugin tag ``3.0.3``).
:func:`problems` checks a bundle against them; :func:`ijseg.bundles.export_bundle` refuses to
write a bundle that breaks one, so every bundle ijseg writes is checked.

The file is read as SnakeYAML reads it: PyYAML is also a YAML 1.1 parser, so ``eps: 1e-06``
(a string in YAML 1.1) or ``tensorflow_version: 2.10`` (the number 2.1) come out as JDLL sees
them.

This module also renders the ``.ijm`` macros that go into bundles with the model's own
parameters (deepImageJ 3.0.3 runs them without arguments) and writes the macro lines that run a
bundle in deepImageJ 3.1, 3.0.3 and ijseg.
"""

from __future__ import annotations

import io
import math
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Rule", "RULES", "problems", "read_rdf", "rules_markdown", "render_macro", "macro_lines",
           "tile_for_303", "macro_keys_in", "MACRO_KEYS_303"]

J = "JDLL `src/main/java/io/bioimage/modelrunner/"
P3 = "deepimagej-plugin@3.0.3 `src/main/java/"
#: deepImageJ 3.0.3 cuts its macro options at the first occurrence of each key (case-sensitive)
MACRO_KEYS_303 = ("model", "format", "preprocessing", "postprocessing", "axes", "tile", "logging")
#: kwargs that JDLL can set on each transformation (a ``set<CamelCase>`` method; ``mode`` on all)
_JDLL_KWARGS = {
    "binarize": {"threshold", "eps"},
    "clip": {"min", "max", "eps"},
    "ensure_dtype": None,  # skipped by JDLL
    "fixed_zero_mean_unit_variance": {"mean", "std", "axes", "axis", "eps"},
    "scale_linear": {"gain", "offset", "axes", "axis", "eps"},
    "scale_range": {"min_percentile", "max_percentile", "eps", "reference_tensor", "axes", "axis", "tensor_name"},
    "sigmoid": set(),
    "zero_mean_unit_variance": {"mean", "std", "axes", "axis", "eps"},
}
_AXIS_LETTERS = set("bitzcyx")


@dataclass(frozen=True)
class Rule:
    """One thing deepImageJ needs, where it was read, and its check."""

    id: str
    consumer: str  # "3.1" (JDLL) or "3.0.3"
    source: str
    text: str
    check: Callable[[dict, Bundle], Iterator[str]]


class Bundle:
    """The files of an unpacked or zipped bundle, by name."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            self._names = {p.relative_to(self.path).as_posix() for p in self.path.rglob("*") if p.is_file()}
        else:
            with zipfile.ZipFile(self.path) as z:
                self._names = {n for n in z.namelist() if not n.endswith("/")}

    def has(self, name: str) -> bool:
        return name in self._names

    @property
    def names(self) -> set[str]:
        return set(self._names)

    def read(self, name: str) -> bytes:
        if self.path.is_dir():
            return (self.path / name).read_bytes()
        with zipfile.ZipFile(self.path) as z:
            return z.read(name)


def read_rdf(text: str | bytes) -> dict:
    """``rdf.yaml`` parsed with YAML 1.1 rules, the way SnakeYAML in deepImageJ reads it."""
    import yaml

    data = yaml.safe_load(text)
    return data if isinstance(data, dict) else {}


def _v(rdf: dict) -> str:
    fv = rdf.get("format_version")
    return str(fv)[:3] if isinstance(fv, str) else "?"


def _is_num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _tensors(rdf: dict) -> Iterator[tuple[str, int, dict]]:
    for kind in ("inputs", "outputs"):
        for i, t in enumerate(rdf.get(kind) or []):
            yield kind, i, t if isinstance(t, dict) else {}


# ---- JDLL (deepImageJ 3.1) --------------------------------------------------------------------

def _format_version(rdf, b):
    fv = rdf.get("format_version")
    if not (isinstance(fv, str) and fv[:3] in ("0.4", "0.5")):
        yield f"format_version must be a string starting with 0.4 or 0.5, got {fv!r}"


def _strings(rdf, b):
    for key in ("name", "description", "license", "documentation", "type", "git_repo", "id"):
        if key in rdf and not isinstance(rdf[key], str):
            yield f"{key} must be a string, got {type(rdf[key]).__name__} ({rdf[key]!r:.60})"
    if not isinstance(rdf.get("name"), str):
        yield "name is required"
    if "timestamp" in rdf and rdf["timestamp"] is None:
        yield "timestamp is present but empty"


def _id(rdf, b):
    nick = ((rdf.get("config") or {}).get("bioimageio") or {}).get("nickname")
    ident = rdf.get("id")
    if _v(rdf) == "0.5" and "config" in rdf and not (isinstance(ident, str) or isinstance(nick, str)):
        yield "a 0.5 bundle with a config needs an id or config.bioimageio.nickname"
    if _v(rdf) == "0.4" and not isinstance(nick, str):
        yield "a 0.4 bundle needs config.bioimageio.nickname (else deepImageJ names it friend-N, which changes)"
    if isinstance(ident, str) and ident.count("/") >= 2:
        yield f"id {ident!r} has two or more '/'"


def _covers(rdf, b):
    covers = rdf.get("covers")
    if covers is None:
        return
    if not isinstance(covers, list) or not all(isinstance(c, str) for c in covers):
        yield f"covers must be a list of file names (strings), got {covers!r:.80}"
    elif covers:
        if not b.has(covers[0]):
            yield f"covers[0] {covers[0]!r} is not a file at the bundle root"
        if not covers[0].lower().endswith((".png", ".jpg", ".jpeg", ".gif")):
            yield f"covers[0] {covers[0]!r}: ImageIO reads only png, jpg and gif"


def _tags(rdf, b):
    tags = rdf.get("tags")
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        yield f"tags must be a list of strings (the model search reads them), got {tags!r:.60}"


def _people(rdf, b):
    for key, fields in (("authors", ("name", "affiliation", "email", "github_user", "orcid")),
                        ("maintainers", ("name", "affiliation", "email", "github_user", "orcid")),
                        ("cite", ("text", "doi", "url"))):
        for i, entry in enumerate(rdf.get(key) or []):
            if not isinstance(entry, dict):
                yield f"{key}[{i}] must be a map"
                continue
            for f in fields:
                if f in entry and not isinstance(entry[f], str):
                    yield f"{key}[{i}].{f} must be a string, got {entry[f]!r}"


def _axes(rdf, b):
    v = _v(rdf)
    for kind, i, t in _tensors(rdf):
        where = f"{kind}[{i}]"
        axes = t.get("axes")
        if v == "0.4":
            if not isinstance(axes, str) or set(axes) - _AXIS_LETTERS:
                yield f"{where}.axes must be a string of the letters bitzcyx, got {axes!r}"
            continue
        if not isinstance(axes, list) or not all(isinstance(a, dict) for a in axes):
            yield f"{where}.axes must be a list of maps"
            continue
        for k, a in enumerate(axes):
            if "type" not in a:
                yield f"{where}.axes[{k}] needs a type"
                continue
            letter = "b" if a["type"] == "batch" else "c" if a["type"] == "channel" else a.get("id")
            if letter not in _AXIS_LETTERS:
                yield f"{where}.axes[{k}]: JDLL knows the axis ids b, i, t, z, c, y, x, got {letter!r}"
            if a["type"] == "channel" and not isinstance(a.get("channel_names"), list):
                yield f"{where}.axes[{k}]: a channel axis needs channel_names"
            if "halo" in a and not _is_int(a["halo"]):
                yield f"{where}.axes[{k}].halo must be an integer"
            size = a.get("size")
            if size is None or _is_int(size):
                continue
            if not isinstance(size, dict):
                yield f"{where}.axes[{k}].size must be an integer or a map, got {size!r}"
            elif "min" in size or "step" in size:
                if not (_is_int(size.get("min")) and _is_int(size.get("step"))):
                    yield f"{where}.axes[{k}].size needs integer min and step, got {size!r}"
            elif "tensor_id" in size and kind == "outputs":
                if size.get("tensor_id") not in [x.get("id") for x in rdf.get("inputs") or []]:
                    yield f"{where}.axes[{k}].size refers to {size.get('tensor_id')!r}, which is not an input"


def _data_types(rdf, b):
    ok = {"int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "float32", "float64"}
    for kind, i, t in _tensors(rdf):
        dtype = t.get("data_type") if _v(rdf) == "0.4" else (t.get("data") or {}).get("type", "float32") \
            if isinstance(t.get("data"), dict) else "float32"
        if kind == "outputs" and dtype not in ok:
            yield f"{kind}[{i}]: output data type {dtype!r} is not one JDLL writes"


def _processing(rdf, b):
    for kind, i, t in _tensors(rdf):
        for key in ("preprocessing", "postprocessing"):
            for k, op in enumerate(t.get(key) or []):
                where = f"{kind}[{i}].{key}[{k}]"
                name = op.get("name", op.get("id")) if isinstance(op, dict) else None
                if name not in _JDLL_KWARGS:
                    yield f"{where}: JDLL has no transformation {name!r}"
                    continue
                allowed = _JDLL_KWARGS[name]
                if allowed is None:
                    continue
                kwargs = op.get("kwargs") or {}
                for arg, value in kwargs.items():
                    if arg != "mode" and arg not in allowed:
                        yield f"{where}: JDLL's {name} has no setter for {arg!r}"
                    if value is None:
                        yield f"{where}: kwarg {arg} is null"
                    if name == "scale_range" and arg in ("min_percentile", "max_percentile", "eps") \
                            and not (_is_num(value) or isinstance(value, str)):
                        yield f"{where}: {arg} must be a number, got {value!r}"
                    if name in ("binarize", "scale_linear") and arg in ("threshold", "gain", "offset") \
                            and not _is_num(value):
                        yield f"{where}: JDLL uses only scalar {arg} (a list keeps its first value)"
                    if arg == "axes" and isinstance(value, list) and "batch" in value:
                        yield f"{where}: axes must not name batch (JDLL matches letters in the joined string)"


def _weights(rdf, b):
    weights = rdf.get("weights")
    if not isinstance(weights, dict) or not weights:
        yield "weights must be a map"
        return
    runnable = {"tensorflow_saved_model_bundle", "onnx", "torchscript", "pytorch_state_dict"}
    if not runnable & set(weights):
        yield f"no weights that deepImageJ runs (tensorflow_saved_model_bundle, onnx, torchscript): {sorted(weights)}"
    for fmt, w in weights.items():
        if fmt not in runnable:
            continue
        src = w.get("source") if isinstance(w, dict) else None
        if not isinstance(src, str) or "/" in src or not b.has(src):
            yield f"weights.{fmt}.source must name a file at the bundle root, got {src!r}"
            continue
        if fmt == "tensorflow_saved_model_bundle":
            tfv = w.get("tensorflow_version")
            if not isinstance(tfv, str):
                yield f"weights.{fmt}.tensorflow_version must be a string (missing: NullPointerException; " \
                      f"an unquoted 2.10 reads as 2.1), got {tfv!r}"
            if src.endswith(".zip"):
                with zipfile.ZipFile(io.BytesIO(b.read(src))) as z:
                    names = set(z.namelist())
                if "saved_model.pb" not in names or not any(n.startswith("variables/") for n in names):
                    yield f"{src} must hold saved_model.pb and variables/ at its root"
        if fmt == "onnx":
            opset = w.get("opset_version", 17)
            if not (_is_int(opset) and opset <= 17):
                yield f"weights.onnx.opset_version {opset!r}: deepImageJ's onnxruntime 1.12.1 runs opsets up to 17"


def _tests(rdf, b):
    import numpy as np

    if _v(rdf) == "0.4":
        for key in ("test_inputs", "test_outputs"):
            files = rdf.get(key)
            if not isinstance(files, list) or not all(isinstance(f, str) and b.has(f) and f.endswith(".npy")
                                                      for f in files):
                yield f"{key} must be a list of .npy files at the bundle root, got {files!r}"
        return
    for kind, i, t in _tensors(rdf):
        src = (t.get("test_tensor") or {}).get("source")
        if not (isinstance(src, str) and src.endswith(".npy") and b.has(src)):
            yield f"{kind}[{i}].test_tensor.source must name an .npy file at the bundle root, got {src!r}"
            continue
        arr = np.load(io.BytesIO(b.read(src)))
        if arr.ndim != len(t.get("axes") or []):
            yield f"{src} has {arr.ndim} dimensions for {len(t.get('axes') or [])} axes"


def _tiling(rdf, b):
    if _v(rdf) != "0.5":
        return
    for kind, i, t in _tensors(rdf):
        for k, a in enumerate(t.get("axes") or []):
            size = a.get("size") if isinstance(a, dict) else None
            if kind == "inputs" and isinstance(size, dict) and _is_int(size.get("step")) and size["step"] > 0 \
                    and _is_int(size.get("min")) and size["min"] % size["step"]:
                yield f"{kind}[{i}].axes[{k}]: min {size['min']} is not a multiple of step {size['step']} " \
                      f"(JDLL's tiles are multiples of step)"
            if kind == "outputs" and isinstance(size, dict) and "tensor_id" in size and size.get("offset", 0):
                yield f"{kind}[{i}].axes[{k}]: JDLL sizes referenced axes as tile * scale + 2 * offset; use offset 0"
            if kind == "inputs" and isinstance(a, dict) and a.get("halo"):
                yield f"{kind}[{i}].axes[{k}]: put the halo on the output axes"
            if kind == "outputs" and isinstance(size, dict) and "step" in size:
                yield f"{kind}[{i}].axes[{k}]: an output axis with a step is 'too complex' for JDLL"


def _deepimagej_block(rdf, b):
    dij = (rdf.get("config") or {}).get("deepimagej")
    if dij is None:
        return
    for key in ("allow_tiling", "pyramidal_model"):
        if not isinstance(dij.get(key), bool):
            yield f"config.deepimagej.{key} must be a boolean (a missing allow_tiling turns tiling off), " \
                  f"got {dij.get(key)!r}"
    for key in ("test_information", "prediction"):
        if not isinstance(dij.get(key), dict):
            yield f"config.deepimagej.{key} must be a map"


# ---- deepImageJ 3.0.3 ----------------------------------------------------------------------------

def _only_04(fn):
    def check(rdf, b):
        if _v(rdf) == "0.4":
            yield from fn(rdf, b)
    check.__name__ = fn.__name__
    return check


def macro_keys_in(text: str) -> list[str]:
    """The deepImageJ 3.0.3 macro keys inside ``text`` (a model or macro file name), which would
    cut its options in the wrong place.

    >>> macro_keys_in("percentile_normalization.ijm")
    ['tile']
    """
    return [k for k in MACRO_KEYS_303 if k in text]


@_only_04
def _name_303(rdf, b):
    name = rdf.get("name")
    if isinstance(name, str):
        bad = macro_keys_in(name)
        if bad:
            yield f"name {name!r} contains {', '.join(bad)}: deepImageJ 3.0.3 cuts its macro options at these words"
        if '"' in name:
            yield "name must not contain double quotes"


@_only_04
def _people_303(rdf, b):
    authors = rdf.get("authors")
    if authors is not None and not (isinstance(authors, list) and authors
                                    and all(isinstance(a, dict) and isinstance(a.get("name"), str) for a in authors)):
        yield "authors must be a non-empty list of maps with a name"
    for i, c in enumerate(rdf.get("cite") or []):
        if not (isinstance(c, dict) and isinstance(c.get("text"), str)):
            yield f"cite[{i}] needs a text"


@_only_04
def _weights_303(rdf, b):
    weights = rdf.get("weights") or {}
    tfw = weights.get("tensorflow_saved_model_bundle")
    if tfw and any(n.endswith(".onnx") for n in b.names) and tfw.get("source") != "tensorflow_saved_model_bundle.zip":
        yield ("with an .onnx file in the folder, deepImageJ 3.0.3 looks for the SavedModel as "
               f"tensorflow_saved_model_bundle.zip, not {tfw.get('source')!r}")
    onnx_w = weights.get("onnx")
    if onnx_w and isinstance(onnx_w.get("source"), str) and b.has(onnx_w["source"]):
        import onnx

        graph = onnx.load_model_from_string(b.read(onnx_w["source"])).graph
        for kind, names in (("inputs", [i.name for i in graph.input]), ("outputs", [o.name for o in graph.output])):
            declared = [t.get("name") for t in rdf.get(kind) or []]
            if declared != names:
                yield f"{kind} names {declared} must equal the ONNX graph's {names} (3.0.3 feeds ONNX by name)"


@_only_04
def _tensors_303(rdf, b):
    inputs = rdf.get("inputs") or []
    for i, t in enumerate(inputs):
        axes = t.get("axes") or ""
        if "c" not in axes:
            yield f"inputs[{i}].axes {axes!r} must include c"
        if t.get("data_type") != "float32":
            yield f"inputs[{i}].data_type must be float32 (3.0.3 always feeds float32)"
        shape = t.get("shape")
        if isinstance(shape, dict):
            if not all(isinstance(shape.get(k), list) and all(_is_int(v) for v in shape[k]) for k in ("min", "step")):
                yield f"inputs[{i}].shape needs integer lists min and step"
        elif not (isinstance(shape, list) and all(_is_int(v) for v in shape)):
            yield f"inputs[{i}].shape must be integers"
    names = [t.get("name") for t in inputs]
    for i, t in enumerate(rdf.get("outputs") or []):
        shape = t.get("shape")
        if not isinstance(shape, dict):
            yield f"outputs[{i}].shape must be reference_tensor/scale/offset (a fixed shape with a halo pads forever)"
            continue
        if shape.get("reference_tensor") not in names:
            yield f"outputs[{i}].shape.reference_tensor must be an input name, got {shape.get('reference_tensor')!r}"
        offset, scale = shape.get("offset") or [], shape.get("scale") or []
        if len(offset) != len(t.get("axes") or "") or len(scale) != len(offset):
            yield f"outputs[{i}]: scale and offset need one value per axis"
        if any(not _is_num(o) or (2 * o) % 1 for o in offset):
            yield f"outputs[{i}].shape.offset must be multiples of 0.5, got {offset}"
        for ref in inputs:
            missing = set(ref.get("axes") or "") - set(t.get("axes") or "")
            if missing:
                yield f"outputs[{i}].axes lack the input axes {''.join(sorted(missing))}"
        halo = t.get("halo")
        if halo is not None and not (isinstance(halo, list) and len(halo) == len(t.get("axes") or "")
                                     and all(_is_int(h) for h in halo)):
            yield f"outputs[{i}].halo must be one integer per axis"


@_only_04
def _deepimagej_303(rdf, b):
    dij = (rdf.get("config") or {}).get("deepimagej")
    if not isinstance(dij, dict):
        return  # then 3.0.3 defaults to no pyramid, tiling allowed
    ti = dij.get("test_information")
    inputs = ti.get("inputs") if isinstance(ti, dict) else None
    if not (isinstance(inputs, list) and inputs and all(isinstance(x, dict) and "name" in x and "size" in x
                                                         for x in inputs)):
        yield "config.deepimagej.test_information.inputs must list maps with name and size"
    for k, v in (ti or {}).items():
        if v is None:
            yield f"config.deepimagej.test_information.{k} is null"
    pred = dij.get("prediction")
    for key, entries in (pred or {}).items():
        if not isinstance(entries, list):
            yield f"config.deepimagej.prediction.{key} must be a list"
            continue
        for e in entries:
            f = e.get("kwargs") if isinstance(e, dict) else None
            if f is None:
                continue
            if not (isinstance(f, str) and b.has(f)):
                yield f"config.deepimagej.prediction.{key}: {f!r} is not a file in the bundle"
            elif macro_keys_in(f):
                yield f"macro file name {f!r} contains one of {', '.join(MACRO_KEYS_303)}"


RULES: tuple[Rule, ...] = (
    Rule("J1", "3.1", J + "bioimageio/description/ModelDescriptorFactory.java`",
         "`format_version` is a string starting with 0.4 or 0.5", _format_version),
    Rule("J2", "3.1", J + "bioimageio/description/ModelDescriptor.java` buildModelDescription",
         "`name`, `description`, `license`, `documentation`, `type`, `git_repo`, `id` are strings "
         "(a `{source, sha256}` map throws ClassCastException); `timestamp` not empty", _strings),
    Rule("J3", "3.1", J + "bioimageio/description/ModelDescriptorV05.java` findID, `ModelDescriptorV04.java`",
         "an `id` or `config.bioimageio.nickname` (NullPointerException without); fewer than two `/`", _id),
    Rule("J4", "3.1", J + "gui/ModelSelectionPanel.java` setCardsData; `ModelDescriptor.java` castListStrings",
         "`covers` is a list of file names; the first is a png/jpg/gif at the bundle root", _covers),
    Rule("J5", "3.1", J + "gui/SearchBar.java`", "`tags` is a list of strings", _tags),
    Rule("J6", "3.1", J + "bioimageio/description/ModelDescriptor.java` buildAuthors, buildCiteElements",
         "`authors`, `maintainers`, `cite`: lists of maps whose values are strings", _people),
    Rule("J7", "3.1", J + "bioimageio/description/AxisV05.java`, `AxisSize.java`, `AxesV04.java`, "
         "`tensor/Tensor.java` convertToTensorDimOrder",
         "0.5 axes: maps with a `type`, ids among b i t z c y x, channel axes with `channel_names`, integer "
         "sizes (`{min, step}` or a reference to an input), integer halos; 0.4 axes: a string", _axes),
    Rule("J8", "3.1", J + "utils/CommonUtils.java` getImgLib2DataType",
         "output data types among (u)int8/16/32, int64, float32/64", _data_types),
    Rule("J9", "3.1", J + "model/processing/TransformationInstance.java`, `transformations/*Transformation.java`",
         "each pre/post-processing op has a JDLL transformation and each kwarg a setter; no null kwargs; "
         "scalar `threshold`/`gain`/`offset`; `axes` without batch", _processing),
    Rule("J10", "3.1", J + "bioimageio/description/weights/ModelWeight.java`, `TfWeights.java`; "
         "tensorflow-2-java-interface `Tensorflow2Interface.java`; JDLL `supportedVersions.json`",
         "weights that deepImageJ runs, `source` a file at the bundle root, `tensorflow_version` a string, the "
         "SavedModel zip with `saved_model.pb` and `variables/` at its root, ONNX opset <= 17", _weights),
    Rule("J11", "3.1", "deepimagej-plugin master `src/main/java/deepimagej/Runner.java` getTestInputs; "
         + J + "bioimageio/description/ModelDescriptorV04.java` addSampleAndTestImages",
         "test tensors are `.npy` files at the bundle root with one dimension per axis (0.4: lists)", _tests),
    Rule("J12", "3.1", J + "bioimageio/tiling/TileCalculator.java`, `TileMaker.java`",
         "input `min` a multiple of `step`; halos on outputs only; referenced output sizes without offset; "
         "no output steps", _tiling),
    Rule("J13", "3.1", J + "bioimageio/description/deepimagej/DeepImageJExecutionConfig.java`",
         "`config.deepimagej`, where present: boolean `allow_tiling` and `pyramidal_model`, maps "
         "`test_information` and `prediction`", _deepimagej_block),
    Rule("D1", "3.0.3", P3 + "deepimagej/tools/HeadlessProcessing.java` retrieveArguments",
         "the model name contains none of the macro keys model, format, preprocessing, postprocessing, axes, "
         "tile, logging (options are cut at their first occurrence), and no double quote", _name_303),
    Rule("D2", "3.0.3", P3 + "deepimagej/Parameters.java`",
         "`authors` a non-empty list of maps with a name; `cite` entries with a text", _people_303),
    Rule("D3", "3.0.3", P3 + "deepimagej/DeepImageJ.java` check, findZippedBiozooModel; "
         "`deepimagej/tools/ModelLoader.java`; JDLL 0.3.10 onnx interface",
         "with an `.onnx` in the folder the SavedModel zip is `tensorflow_saved_model_bundle.zip`; tensor names "
         "equal the ONNX graph's input/output names", _weights_303),
    Rule("D4", "3.0.3", P3 + "deepimagej/Parameters.java`, `deepimagej/RunnerDL.java`, "
         "`deepimagej/tools/ArrayOperations.java` findTotalPadding",
         "inputs: axes with c, float32, integer min/step; outputs: reference_tensor/scale/offset shapes naming an "
         "input, offsets multiples of 0.5, every input axis, one integer halo per axis", _tensors_303),
    Rule("D5", "3.0.3", P3 + "deepimagej/Parameters.java`, `deepimagej/processing/ProcessingBridge.java`",
         "`config.deepimagej.test_information.inputs` with name and size, no null entries; prediction macros are "
         "files in the bundle whose names avoid the macro keys", _deepimagej_303),
)


def problems(bundle: str | Path, *, consumers: tuple[str, ...] = ("3.1", "3.0.3")) -> list[str]:
    """Every rule of :data:`RULES` that a bundle (zip or folder) breaks, as ``"ID: problem"``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "rdf.yaml").write_text("format_version: 0.5.4\\nname: x\\ndocumentation: {source: README.md}\\n")
    >>> [p for p in problems(d) if p.startswith("J2")]
    ["J2: documentation must be a string, got dict ({'source': 'README.md'})"]
    """
    b = Bundle(bundle)
    if not b.has("rdf.yaml"):
        return ["J0: rdf.yaml is not at the bundle root (deepImageJ reads only that file name)"]
    rdf = read_rdf(b.read("rdf.yaml"))
    out = []
    for rule in RULES:
        if rule.consumer in consumers:
            out += [f"{rule.id}: {p}" for p in rule.check(rdf, b)]
    return out


def rules_markdown() -> str:
    """The rules as the Markdown table of ``docs/deepimagej.md``."""
    lines = ["| rule | deepImageJ | what a bundle needs | read in |", "|---|---|---|---|"]
    for r in RULES:
        lines.append(f"| {r.id} | {r.consumer} | {r.text} | {r.source} |")
    return "\n".join(lines) + "\n"


# ---- macros with the model's own parameters ------------------------------------------------------

_DEFAULT_LINE = re.compile(r"^(?P<var>(?:var )?(?P<name>[a-z_]+) = )(?P<value>[^;]+);(?P<rest>\s*// ijseg: default.*)$",
                           re.MULTILINE)


def macro_defaults(text: str) -> dict[str, str]:
    """The ``NAME = VALUE;  // ijseg: default`` lines of a macro, as ``{NAME: VALUE}``."""
    return {m["name"]: m["value"] for m in _DEFAULT_LINE.finditer(text)}


def render_macro(text: str, **values: float) -> str:
    """A macro with its default values replaced (deepImageJ 3.0.3 runs macros without arguments).

    Examples
    --------
    >>> render_macro("pmin = 1;  // ijseg: default\\nx = 2;", pmin=0.5)
    'pmin = 0.5;  // ijseg: default\\nx = 2;'
    >>> render_macro("eps = 0.1;  // ijseg: default", eps=1e-6)
    'eps = 0.000001;  // ijseg: default'
    """
    known = macro_defaults(text)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise KeyError(f"the macro has no default for {', '.join(unknown)} (it has {', '.join(sorted(known))})")

    def sub(m: re.Match) -> str:
        if m["name"] not in values:
            return m.group(0)
        import numpy as np

        # positional notation: the macro language reads 0.000001, not every exponent form
        v = np.format_float_positional(float(values[m["name"]]), trim="-")
        return f"{m['var']}{v};{m['rest']}"

    return _DEFAULT_LINE.sub(sub, text)


def tile_for_303(min_size: int, step: int, halo: int, *, core: int = 256) -> int:
    """The smallest tile that deepImageJ 3.0.3 accepts with at least ``core`` pixels inside the halo.

    3.0.3 wants ``(tile - min) % step == 0`` and ``2 * halo < tile``.

    >>> tile_for_303(52, 4, 24)
    304
    """
    k = max(0, math.ceil((2 * halo + core - min_size) / step))
    return min_size + k * step


def macro_lines(rdf: dict, *, bundle_path: str = "BUNDLE.zip", n_channels: int = 1) -> dict[str, str]:
    """The macro lines that run this bundle: deepImageJ 3.1, deepImageJ 3.0.3 (0.4 bundles) and ijseg."""
    name = rdf.get("name", "")
    nick = rdf.get("id") or ((rdf.get("config") or {}).get("bioimageio") or {}).get("nickname") or name
    ij = (rdf.get("config") or {}).get("ijseg") or {}
    pp = ij.get("postprocessing") or {}
    lines = {
        "deepImageJ 3.1": f'run("DeepImageJ Run", "model_path=[{nick}] input_path=null output_folder=null '
                          f'display_output=all");',
        "ijseg": f'run("IJSeg Predict", "model=[{bundle_path}] output=labels threshold={pp.get("threshold", 0.5):.2f} '
                 f'seed={pp.get("seed_threshold", 0.8):.2f} size=0-Infinity tile=0");',
    }
    dij = (rdf.get("config") or {}).get("deepimagej")
    if dij:
        pred = dij.get("prediction") or {}
        pre = [e["kwargs"] for e in pred.get("preprocess") or [] if isinstance(e, dict) and e.get("kwargs")]
        post = [e["kwargs"] for e in pred.get("postprocess") or [] if isinstance(e, dict) and e.get("kwargs")]
        inp = (rdf.get("inputs") or [{}])[0]
        shape, axes = inp.get("shape") or {}, inp.get("axes", "byxc")
        halo = max((rdf.get("outputs") or [{}])[0].get("halo") or [0])
        mn = shape.get("min", [1, 64, 64, 1])[axes.index("y")]
        st = shape.get("step", [0, 16, 16, 0])[axes.index("y")]
        tile = tile_for_303(mn, st, halo)
        fmt = "Tensorflow" if "tensorflow_saved_model_bundle" in (rdf.get("weights") or {}) else "Onnx"
        model = f"[{name}]" if " " in name else name  # 3.0.3 strips brackets only around values with a space
        tiles = ",".join(str(tile) if a in "yx" else str(n_channels) for a in axes if a != "b")
        axes_opt = ",".join(a.upper() for a in axes if a != "b")
        lines["deepImageJ 3.0.3"] = (
            f'run("DeepImageJ Run", "model={model} format={fmt} '
            f'preprocessing=[{", ".join(pre) or "no preprocessing"}] '
            f'postprocessing=[{", ".join(post) or "no postprocessing"}] axes={axes_opt} tile={tiles} logging=normal");')
    return lines


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - `python -m ijseg.bundles.deepimagej`
    import sys

    args = sys.argv[1:] if argv is None else argv
    if args == ["--markdown"]:
        sys.stdout.write(rules_markdown())
        return 0
    bad = 0
    for path in args:
        found = problems(path)
        bad += bool(found)
        print(f"{path}: " + ("meets every deepImageJ rule" if not found else f"{len(found)} problem(s)"))
        for p in found:
            print(f"  {p}")
    return 1 if bad else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
