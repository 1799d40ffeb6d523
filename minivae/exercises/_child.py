"""The child process of ``minivae exercise check``: it loads the learner's file and calls its function.

Run as ``python -I -S _child.py``; it imports nothing of minivae, so none of minivae is loaded in this process.
From the parent, on stdin (a pickle): the files, the function's name, the cases (the inputs of each call) and the
site directories NumPy and SciPy come from. Back to the parent, on the original stdout: a NumPy ``.npz`` archive
(read there with ``allow_pickle=False``) holding, for each file, one JSON tree (what happened, each call's result
and its inputs as they were after the call) and the arrays the tree points to. What the learner's code prints goes
to stderr. The reference answers, the tolerance and the verdict are never here: this process computes, the parent
judges.

The learner may import NumPy, SciPy and files from the file's own folder (first on the import path). An import of
minivae is refused (:class:`Refuse`) and recorded, so the parent can say the solution used the library's answer.
"""

import io
import json
import os
import pickle
import sys
import traceback
import warnings

LIBRARY = "minivae"


def _is_library(name):
    return name == LIBRARY or name.startswith(LIBRARY + ".")


class Refuse:
    """A finder, first on ``sys.meta_path``, that refuses ``minivae`` and records who asked."""

    def __init__(self):
        self.asked = []

    def find_spec(self, name, path=None, target=None):
        if _is_library(name):
            self.asked.append(name)
            raise ImportError(f"{name} is not available to an exercise solution", name=name)
        return None


def encode(value, arrays):
    """A JSON-able tree of ``value``; arrays go into ``arrays`` and the tree holds their index."""
    import numpy as np

    if isinstance(value, (np.ndarray, np.generic)):
        array = np.asarray(value)
        if array.dtype.hasobject:
            return {"other": "an array of Python objects"}
        arrays.append(np.array(array, copy=True))
        return {"array": len(arrays) - 1}
    if isinstance(value, bool) or value is None:
        return {"other": type(value).__name__}
    if isinstance(value, (int, float, complex)):
        arrays.append(np.asarray(value))
        return {"array": len(arrays) - 1, "python": type(value).__name__}
    if isinstance(value, (tuple, list)):
        return {type(value).__name__: [encode(item, arrays) for item in value]}
    if isinstance(value, dict):
        return {"dict": {str(key): encode(item, arrays) for key, item in value.items()}}
    return {"other": type(value).__name__}


def _where(exc, folder):
    """'my_kl.py, line 3' for the deepest frame of the traceback inside the learner's folder."""
    where = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        if os.path.dirname(os.path.abspath(frame.filename)) == folder:
            where = f"{os.path.basename(frame.filename)}, line {frame.lineno}"
    return where


def _problem(exc, folder, stage, refuse):
    """What went wrong, as ``{"kind": ..., "message": ...}`` (the parent words it)."""
    if refuse.asked:
        return {"kind": "library", "message": refuse.asked[0], "where": _where(exc, folder)}
    if isinstance(exc, SyntaxError):
        name = os.path.basename(exc.filename or "?")
        return {"kind": "syntax", "message": f"{name}, line {exc.lineno}: SyntaxError: {exc.msg}"}
    if isinstance(exc, SystemExit):
        return {"kind": "exit", "message": repr(exc.code), "where": _where(exc, folder), "stage": stage}
    if isinstance(exc, NotImplementedError):
        return {"kind": "stub", "message": str(exc), "stage": stage}
    text = " ".join(str(exc).split())
    return {"kind": "exception", "message": f"{type(exc).__name__}: {text}" if text else type(exc).__name__,
            "where": _where(exc, folder), "stage": stage}


def load(path, name, refuse):
    """The learner's module, loaded under its own name, and the function ``name`` it defines."""
    import importlib.util

    stem = os.path.splitext(os.path.basename(path))[0]
    module_name = stem if stem.isidentifier() and stem not in sys.modules else f"exercise_solution_{len(sys.modules)}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return getattr(module, name, None)


def run(function, cases, folder, refuse, encode_arrays):
    """Call ``function`` on each case; stop at the first that raises. Returns (calls, problem)."""
    calls = []
    for number, case in enumerate(cases):
        try:
            result = function(**case)
        except BaseException as exc:  # the learner's code may end in any way: say which, never crash
            if isinstance(exc, KeyboardInterrupt):
                raise
            problem = _problem(exc, folder, f"case {number + 1}", refuse)
            problem["case"] = number
            return calls, problem
        if refuse.asked:
            return calls, {"kind": "library", "message": refuse.asked[0], "where": ""}
        calls.append({"result": encode(result, encode_arrays), "after": encode(case, encode_arrays)})
    return calls, None


def solve(path, name, cases, refuse, arrays):
    """One file: load it, find the function, run every case. A JSON-able dict."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        function = load(path, name, refuse)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        return {"problem": _problem(exc, folder, "import", refuse)}
    if refuse.asked:
        return {"problem": {"kind": "library", "message": refuse.asked[0], "where": ""}}
    if function is None:
        return {"problem": {"kind": "missing", "message": ""}}
    if not callable(function):
        return {"problem": {"kind": "not callable", "message": type(function).__name__}}
    calls, problem = run(function, cases, folder, refuse, arrays)
    loaded = sorted(m for m in sys.modules if _is_library(m))
    if loaded and problem is None:
        problem = {"kind": "library", "message": loaded[0], "where": ""}
    return {"calls": calls, "problem": problem}


def main():
    out = os.fdopen(os.dup(1), "wb")  # the answer goes to the real stdout ...
    os.dup2(2, 1)  # ... and whatever the learner prints to stderr
    job = pickle.loads(sys.stdin.buffer.read())
    for directory in job["site"]:
        if directory not in sys.path:
            sys.path.append(directory)
    import numpy as np

    savez = np.savez
    refuse = Refuse()
    sys.meta_path.insert(0, refuse)
    warnings.simplefilter("ignore")
    np.seterr(all="ignore")
    answers, arrays = [], []
    for path in job["paths"]:
        folder = os.path.dirname(os.path.abspath(path))
        sys.path.insert(0, folder)
        answers.append(solve(path, job["function"], pickle.loads(job["cases"]), refuse, arrays))
        if folder in sys.path:
            sys.path.remove(folder)
        refuse.asked.clear()
    buffer = io.BytesIO()
    savez(buffer, tree=np.array(json.dumps(answers)), **{f"a{i}": a for i, a in enumerate(arrays)})
    out.write(buffer.getvalue())
    out.flush()


if __name__ == "__main__":
    main()
