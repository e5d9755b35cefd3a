"""notebooks/quickstart.ipynb, executed top to bottom on the embedded model (compose, train, plot, chat, MMLU)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


@pytest.mark.slow
@pytest.mark.integration
def test_quickstart_notebook_runs(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("QFT_QUICKSTART_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("QFT_QUICKSTART_STEPS", "4")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = {i: "".join(o.get("text", "") for o in cell.get("outputs", [])) for i, cell in enumerate(notebook.cells)}
    assert any("MMLU slice accuracy" in text for text in outputs.values())
    assert any(
        o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
        for cell in notebook.cells
        for o in cell.get("outputs", [])
    )  # the loss plot
    assert (tmp_path / "run/artifact").is_dir() and (tmp_path / "run/eval/results.json").is_file()
