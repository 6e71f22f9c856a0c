"""The tutorial notebooks in ``notebooks/`` run top to bottom on a tiny shared workspace.

The notebooks are executed in order with nbclient, in a kernel on this interpreter,
with ``DOMAINLENS_NOTEBOOK_DIR`` pointing at one temporary work directory: the first one
generates the data and trains the tiny CLIP, the others reuse them (as when a reader runs
them in sequence). Each must run without an error, show its figures and write its tables.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"

#: notebook -> (tables it writes, relative to the work directory; least number of figures)
EXPECTED: dict[str, tuple[tuple[str, ...], int]] = {
    "cross_domain_cka.ipynb": (("cka/cka.csv",), 3),
    "activation_patching.ipynb": (
        ("patching/patching_real_to_sketch.csv", "patching/patching_real_to_quickdraw.csv"), 2),
    "circuit_discovery.ipynb": (
        ("circuits/circuit_nodes.csv", "circuits/circuit_edges.csv", "circuits/faithfulness.csv",
         "circuits/comparison.csv", "circuits/comparison_summary.csv"), 5),
    "embeddings_and_features.ipynb": (
        ("embeddings/separation.csv", "embeddings/domain_probe.csv", "features/sharing.csv",
         "features/sharing_scores.csv"), 3),
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict[str, Path]:
    """One work directory shared by the notebooks, and a ``python3`` kernelspec that runs
    this interpreter (found first through ``JUPYTER_PATH``)."""
    root = tmp_path_factory.mktemp("notebooks")
    spec = root / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (test)", "language": "python",
    }))
    (root / "cwd").mkdir()
    return {"work": root / "work", "jupyter": root / "jupyter", "cwd": root / "cwd"}


def run_notebook(path: Path, cwd: Path):
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=300,
                                     resources={"metadata": {"path": str(cwd)}})
    client.execute()  # raises CellExecutionError at the first failing cell
    return nb


def outputs(nb) -> list:
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]


@pytest.mark.parametrize("name", list(EXPECTED))
def test_notebook_runs(name: str, workspace: dict[str, Path], monkeypatch) -> None:
    monkeypatch.setenv("DOMAINLENS_NOTEBOOK_DIR", str(workspace["work"]))
    monkeypatch.setenv("JUPYTER_PATH", str(workspace["jupyter"]))
    run_dir = workspace["work"] / "runs" / "tiny-rn-cg-high-quickdraw"
    trained_before = (run_dir / "checkpoints" / "epoch_20.pt").is_file()
    nb = run_notebook(NOTEBOOK_DIR / name, workspace["cwd"])

    outs = outputs(nb)
    assert not [o for o in outs if o.output_type == "error"]
    figures = [o for o in outs if o.output_type in ("display_data", "execute_result")
               and "image/png" in o.get("data", {})]
    tables, min_figures = EXPECTED[name]
    assert len(figures) >= min_figures, f"{name} showed {len(figures)} figures"
    for table in tables:
        frame = pd.read_csv(workspace["work"] / table)
        assert len(frame) > 0 and "value" in frame.columns, table

    # the settings cell used the work directory from the environment, and trained only once
    settings = next(c for c in nb.cells if c.cell_type == "code")
    printed = "".join(o.get("text", "") for o in settings.outputs if o.output_type == "stream")
    assert str(workspace["work"].resolve()) in printed
    assert ("reused" if trained_before else "trained") in printed
    assert [r.name for r in (workspace["work"] / "runs").iterdir()] == [run_dir.name]
    assert (run_dir / "checkpoints" / "epoch_20.pt").is_file()
    assert list(workspace["cwd"].iterdir()) == []  # nothing written outside the work dir
