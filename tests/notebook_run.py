"""Each notebook executed once per test session, for the notebook tests and the docs build alike.

:func:`executed` runs a notebook in quick mode with nbclient, headless, in a working directory of its own, and
keeps the executed copy in a folder that every pytest-xdist worker of the session shares. The first caller runs
it, holding a lock on the notebook's name; a caller in another worker waits for the lock and reads the copy. A
notebook that fails leaves no copy: the next caller runs it again and meets the same error.
"""

import contextlib
import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO / "notebooks"
#: The numbered notebooks; `jupyter nbconvert --execute` writes NAME.nbconvert.ipynb beside each, which is an output.
NOTEBOOKS = sorted(p for p in NOTEBOOK_DIR.glob("*.ipynb") if not p.name.endswith(".nbconvert.ipynb"))

#: Seconds one notebook may take in quick mode, kernel start included. Each runs in well under
#: 30 s on two CPU cores; the margin absorbs a slow or busy machine, and a notebook that hangs
#: (or whose quick mode stopped being quick) still fails instead of blocking the suite.
NOTEBOOK_TIMEOUT = 120


class NotebookTimeout(Exception):
    """A notebook did not finish within :data:`NOTEBOOK_TIMEOUT` seconds."""


def session_folder(tmp_path_factory) -> Path:
    """A folder every worker of this test session shares (its workers' temporary folders sit side by side)."""
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "executed-notebooks"
    folder.mkdir(exist_ok=True)
    return folder


@contextlib.contextmanager
def _locked(path: Path):
    try:
        import fcntl
    except ImportError:  # no advisory locks here: each worker runs the notebook itself
        yield
        return
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes, or when this process dies
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _environment(**values):
    """Set environment variables (``None``: remove) for the kernel this process starts, then restore them."""
    old = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _execute(path: Path, workdir: Path):
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    deadline = time.monotonic() + NOTEBOOK_TIMEOUT

    def remaining(cell):  # nbclient's timeout is per cell: give each cell what is left of the notebook's budget
        return max(1, int(deadline - time.monotonic()))

    threads = {var: os.environ.get(var, "1") for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    # one BLAS thread: the notebooks' matrices are small, and threads spinning on a busy machine made quick mode
    # several times slower, not faster. No MPLBACKEND: the kernel draws with the inline backend, headless. The
    # kernel imports this checkout of minivae, installed or not.
    with _environment(MINIVAE_QUICK="1", MINIVAE_DEVICE=os.environ.get("MINIVAE_DEVICE", "cpu"), MPLBACKEND=None,
                      PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
                      **threads):
        client = nbclient.NotebookClient(nb, kernel_name="python3", timeout_func=remaining,
                                         resources={"metadata": {"path": str(workdir)}})
        try:
            client.execute()
        except nbclient.exceptions.CellTimeoutError as error:
            raise NotebookTimeout(f"{path.name}: did not finish within {NOTEBOOK_TIMEOUT} s in quick mode") from error
    return nb


def executed(path: Path, folder: Path):
    """The notebook at ``path`` executed in quick mode: run here, or read from ``folder`` where another caller of
    this session stored it. Raises what the execution raised (:class:`NotebookTimeout` for the time limit)."""
    import nbformat

    copy = folder / path.name
    with _locked(folder / f"{path.name}.lock"):
        if copy.exists():
            return nbformat.read(copy, as_version=4)
        workdir = folder / f"{path.stem}.work"
        workdir.mkdir(exist_ok=True)
        nb = _execute(path, workdir)
        partial = folder / f"{path.name}.partial"
        nbformat.write(nb, partial)
        partial.replace(copy)  # whole or absent, for a reader in another worker
        return nb
