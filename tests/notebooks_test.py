"""Every notebook runs top to bottom (with small settings: TFGP_NOTEBOOK_QUICK=1)."""

import os

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

from conftest import REPO

NOTEBOOKS = sorted(
    name for name in os.listdir(os.path.join(REPO, "notebooks")) if name.endswith(".ipynb")
)


def test_the_three_notebooks_exist():
    assert NOTEBOOKS == ["quickstart.ipynb", "speech_fsdd.ipynb", "tuning.ipynb"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name, monkeypatch):
    monkeypatch.setenv("TFGP_NOTEBOOK_QUICK", "1")
    folder = os.path.join(REPO, "notebooks")
    notebook = nbformat.read(os.path.join(folder, name), as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": folder}})
    client.execute()  # raises CellExecutionError, with the cell and traceback, on failure
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    # Every notebook shows at least one picture.
    assert any("image/png" in o.get("data", {}) for o in outputs)
