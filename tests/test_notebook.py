"""notebooks/colab_tpu.ipynb executes top to bottom on a CPU with its small-size switch."""

import pytest

import json
from pathlib import Path

import nbformat
from nbclient import NotebookClient

pytestmark = pytest.mark.slow  # runs a simulator or a notebook (the full run keeps it; -m "not slow" skips)

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "colab_tpu.ipynb"


def test_colab_notebook_runs_small(tmp_path, monkeypatch):
    monkeypatch.setenv("HERA_NOTEBOOK_SMALL", "1")  # the kernel inherits this process's environment
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    printed = "".join(
        out.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
    )
    summary = json.loads(printed.split("SUMMARY ", 1)[1].splitlines()[0])
    assert summary["small"] is True
    assert summary["il_epochs_run"] == 3
    assert 0.5 < summary["il_dev_auroc"] <= 1.0  # the shipped dataset's labels are learnable
    assert summary["sweep_configs"] == 8
    assert (tmp_path / "sweep.png").stat().st_size > 1000
    images = [out for cell in notebook.cells for out in cell.get("outputs", []) if "image/png" in out.get("data", {})]
    assert len(images) >= 2  # training curves and the sweep plot
