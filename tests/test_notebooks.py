"""The numbered notebooks in ``notebooks/``: committed clean, and each runs top to bottom.

(a) Every notebook is stored without outputs and without execution counts, so a diff shows
    only changes to the text and the code, never a re-run. Read with ``json``: needs nothing.
(b) Every notebook executes with nbclient in quick mode (``MINIVAE_QUICK=1``), headless, in a
    temporary working directory, within a time budget per notebook, and draws a picture. Each runs
    once per test session (``notebook_run.py``): the docs build shows the same executed copies.
    Skipped, with the reason, when nbclient, nbformat or ipykernel cannot be imported
    (``pip install -e ".[dev]"``).
"""

import json
import re

import pytest
from notebook_run import NOTEBOOK_DIR, NOTEBOOKS, NotebookTimeout, executed, session_folder


def _ids(paths):
    return [p.name for p in paths]


def test_notebooks_are_present_and_numbered():
    names = [p.name for p in NOTEBOOKS]
    assert names, f"no notebooks found in {NOTEBOOK_DIR}"
    for name in names:
        assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", name), f"{name}: expected a name like 01_topic.ipynb"
    numbers = [int(name[:2]) for name in names]
    assert numbers == list(range(1, len(names) + 1)), f"expected notebooks numbered 01, 02, ... without gaps, got {names}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_is_committed_without_outputs(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb.get("nbformat") == 4, f"{path.name}: expected nbformat 4, got {nb.get('nbformat')}"
    code_cells = [cell for cell in nb["cells"] if cell["cell_type"] == "code"]
    assert code_cells, f"{path.name}: expected at least one code cell"
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        assert cell.get("outputs") == [], f"{path.name}, cell {i}: expected no outputs (clear them before committing)"
        assert cell.get("execution_count") is None, \
            f"{path.name}, cell {i}: expected no execution count, got {cell.get('execution_count')}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_reads_quick_mode_and_device_first(path):
    """The first code cell chooses quick mode and the device, so every later cell can use them."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    first = "".join(next(cell for cell in nb["cells"] if cell["cell_type"] == "code")["source"])
    assert "MINIVAE_QUICK" in first, f"{path.name}: expected the first code cell to read MINIVAE_QUICK"
    assert "MINIVAE_DEVICE" in first and "resolve_device" in first, \
        f"{path.name}: expected the first code cell to pass MINIVAE_DEVICE to resolve_device"


#: A private name reached through an object (``trainer._step``, ``model._encode``): minivae's internals.
PRIVATE_ATTRIBUTE = re.compile(r"\b[A-Za-z_]\w*\._[A-Za-z]\w*")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_uses_only_public_names(path):
    """A notebook shows how minivae is used: through its public API, which is documented and kept stable."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            private = PRIVATE_ATTRIBUTE.findall("".join(cell["source"]))
            assert not private, f"{path.name}, cell {i}: uses private names {private}; give them a public form"


def _notebook_tools():
    """nbformat and nbclient, or skip the test saying what is missing."""
    missing = []
    for module in ("nbformat", "nbclient", "ipykernel"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        pytest.skip(f"executing notebooks needs {', '.join(missing)}: pip install -e '.[dev]'")
    import nbclient
    import nbformat

    return nbformat, nbclient


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_runs_in_quick_mode(path, tmp_path_factory):
    _notebook_tools()
    try:
        nb = executed(path, session_folder(tmp_path_factory))
    except NotebookTimeout as timeout:
        pytest.fail(str(timeout))
    pictures = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
                if out.output_type == "display_data" and "image/png" in out.get("data", {})]
    assert pictures, f"{path.name}: ran but drew no picture"
