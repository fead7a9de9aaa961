"""The package's import graph: every import of an ijseg module, at module level or inside a
function, is an edge; the graph has no cycle (data flows one way, see README "Development")."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "ijseg"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The ijseg modules ``path`` imports (``from .x import y`` counts ``.x.y`` when that is a module)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            # the deepest ijseg module the name refers to
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in SRC.rglob("*.py")}
    modules = set(files)
    graph = {m: _imports(p, modules) for m, p in files.items()}
    # importing a.b runs a/__init__.py first: a package's own imports are not edges of its modules
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_checker_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    graph = import_graph()
    assert "ijseg.predict" in graph and graph["ijseg.cli"]  # the walk sees the package
    # packages re-export their modules; an edge into a package __init__ from its own module is
    # not a cycle of the code, so only module-to-module edges count
    packages = {m for m in graph if (SRC.parent / m.replace(".", "/") / "__init__.py").is_file()}
    modules_only = {m: {t for t in ts if t not in packages} for m, ts in graph.items() if m not in packages}
    assert cycles(modules_only) == []


#: layers, lowest first: a module imports only modules of its own layer or below
LAYERS = [
    ["ijseg.errors", "ijseg._fileio", "ijseg._stderr", "ijseg._gc", "ijseg._tiling", "ijseg._kernels", "ijseg._tf",
     "ijseg._resources", "ijseg._version", "ijseg.provenance", "ijseg.config", "ijseg.preprocess", "ijseg.data"],
    ["ijseg.models", "ijseg.predict", "ijseg.postprocess", "ijseg.measure", "ijseg.measure3d"],
    ["ijseg.pipeline", "ijseg.qc", "ijseg.train", "ijseg.bundles", "ijseg.cluster", "ijseg.blockwise"],
    ["ijseg.ij"],
    # commands' own tools: doctor, and the bundle check, which drives the old runtimes and ImageJ
    ["ijseg.cli", "ijseg.serve", "ijseg.doctor", "ijseg.bundles.check", "ijseg.__main__", "ijseg"],
]


def _layer(module: str) -> int:
    best = None
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (best is None or len(p) > len(best[1])):
                best = (i, p)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best[0]


def test_imports_go_down_the_layers():
    graph = import_graph()
    upward = sorted(f"{m} (layer {_layer(m) + 1}) imports {t} (layer {_layer(t) + 1})"
                    for m, targets in graph.items() for t in targets if _layer(t) > _layer(m))
    assert upward == []


def test_defaults_have_one_source():
    """The Java plugin's defaults are generated from ijseg.config; the stand-alone macros carry
    literal values (they run without ijseg) and must equal it."""
    from ijseg._resources import macro_file
    from ijseg.config import DEFAULT_SEED_THRESHOLD, DEFAULT_THRESHOLD
    from ijseg.bundles.deepimagej import macro_defaults
    from ijseg.ij.plugin import generated_sources
    from ijseg.postprocess import PostprocessOptions
    from ijseg.preprocess import normalizer_from_dict

    java = generated_sources()["ijseg/Defaults.java"]
    assert f"THRESHOLD = {DEFAULT_THRESHOLD!r};" in java
    assert (PostprocessOptions().threshold, PostprocessOptions().seed_threshold) == (DEFAULT_THRESHOLD,
                                                                                      DEFAULT_SEED_THRESHOLD)
    assert float(macro_defaults(macro_file("binarize.ijm").read_text())["threshold"]) == DEFAULT_THRESHOLD
    assert float(macro_defaults(macro_file("3class_to_instances.ijm").read_text())["seed"]) == DEFAULT_SEED_THRESHOLD
    norm = normalizer_from_dict({"name": "percentile"})
    scale = macro_defaults(macro_file("scale_range.ijm").read_text())
    assert (float(scale["pmin"]), float(scale["pmax"]), float(scale["eps"])) == (norm.pmin, norm.pmax, norm.eps)
    for src in Path(SRC / "ij" / "java").rglob("*.java"):  # no literal threshold left in the Java code
        code = "\n".join(ln for ln in src.read_text().splitlines() if not ln.lstrip().startswith("*"))
        assert "0.5" not in code and "0.8" not in code, src
