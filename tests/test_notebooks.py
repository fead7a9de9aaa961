"""The notebooks run top to bottom with the quick settings, and every figure cell draws its figure."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import REPO

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = ["01_segmentation_7_steps.ipynb", "02_bundles_and_imagej.ipynb"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """One folder for both, as in notebooks/: the second uses the first one's bundle."""
    return tmp_path_factory.mktemp("notebooks")


def test_every_notebook_is_listed():
    assert sorted(p.name for p in (REPO / "notebooks").glob("*.ipynb")) == NOTEBOOKS


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_and_draws_its_figures(name, workdir, monkeypatch):
    nb = nbformat.read(REPO / "notebooks" / name, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "notebooks are stored without outputs"
    # execute() raises at a failing cell, except at a cell tagged raises-exception (it records the
    # error and goes on): no cell may be tagged so
    assert not [c.source[:80] for c in nb.cells if "raises-exception" in c.metadata.get("tags", [])]
    monkeypatch.setenv("IJSEG_NOTEBOOK_QUICK", "1")  # the kernel inherits it
    monkeypatch.delenv("DISPLAY", raising=False)     # ImageJ on its own display, as on a server
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(workdir)}})
    client.execute()  # a failing cell raises CellExecutionError, with the cell and its traceback
    figures = [c for c in nb.cells if "figure" in c.metadata.get("tags", [])]
    assert figures
    for cell in figures:
        images = [o for o in cell.outputs if "image/png" in o.get("data", {})]
        assert images, f"{name}: this cell drew no figure:\n{cell.source[:200]}"
