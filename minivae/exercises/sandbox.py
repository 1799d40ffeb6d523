"""Running a learner's file apart from the judge: a child process with a time limit (``_child.py``).

The child is started as ``python -I -S``: isolated (no ``PYTHON*`` variables, no user site, not the working
directory on the import path) and without ``site``, so the editable install of minivae is not on its path; NumPy's
and SciPy's directories are added by name, and the learner's folder goes first, so ``my_elbo.py`` can import
``my_mlp.py`` beside it from any working directory. The child refuses and records imports of minivae. It gets the
cases' inputs, calls the function and sends back what it returned, as arrays read here with ``allow_pickle=False``
(a pickle from the learner's process could run code in the judge's). Whatever the learner's file does to itself —
patch NumPy, set a tolerance, exit, loop — happens in the child; the answers and the verdict are computed here.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import signal
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np

from .checker import Exercise, ExerciseError, Report, judge

CHILD = Path(__file__).resolve().parent / "_child.py"
#: Seconds the learner's file may take to load and answer every case (``--timeout``).
DEFAULT_TIMEOUT = 60.0


def _site_directories() -> list:
    """Where NumPy and SciPy are installed (the child runs without ``site``, which would add them)."""
    directories = list(site.getsitepackages()) + [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    if site.ENABLE_USER_SITE:
        directories.append(site.getusersitepackages())
    return list(dict.fromkeys(d for d in directories if Path(d).is_dir()))


def _run_child(job: bytes, timeout: float) -> tuple:
    """(exit status, stdout, stderr) of the child given ``job``. It leads a process group of its own, and the whole
    group is killed when the time is up or this process is interrupted, so nothing the learner's code started
    outlives the check."""
    with subprocess.Popen([sys.executable, "-I", "-S", str(CHILD)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, start_new_session=True) as child:
        try:
            stdout, stderr = child.communicate(job, timeout=timeout)
        except BaseException:  # the time limit, Ctrl-C, SIGTERM: end the group, then say so
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            child.communicate()
            raise
        return child.returncode, stdout, stderr


def _decode(tree, arrays):
    if "array" in tree:
        return arrays[f"a{tree['array']}"]
    if "tuple" in tree:
        return tuple(_decode(t, arrays) for t in tree["tuple"])
    if "list" in tree:
        return [_decode(t, arrays) for t in tree["list"]]
    if "dict" in tree:
        return {k: _decode(t, arrays) for k, t in tree["dict"].items()}
    return _Other(tree.get("other", "?"))


class _Other:
    """A value the child could not send as an array (None, a string, an object): named by its type."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return self.name


def check_path(path, function: str) -> Path:
    """``path`` as a Python file, or :class:`ExerciseError` saying what it is instead."""
    path = Path(path)
    if not path.exists():
        raise ExerciseError(f"FILE: expected a Python file defining {function}(), found no file at {path}")
    if not path.is_file():
        raise ExerciseError(f"FILE: expected a Python file defining {function}(), got the folder {path}")
    if path.suffix != ".py":
        raise ExerciseError(f"FILE: expected a Python file ending in .py, got {path.name}")
    return path


def _say(problem: dict, exercise: Exercise, path: Path, cases) -> tuple:
    """(status, one line) for what the child reported: 1 for the library imported, 2 for everything else."""
    kind, message, where = problem["kind"], problem.get("message", ""), problem.get("where", "")
    at = f" ({where})" if where else ""
    stage = problem.get("stage", "import")
    number = problem.get("case", -1)
    label = f" ({cases[number].label})" if isinstance(number, int) and 0 <= number < len(cases) else ""
    when = "at import" if stage == "import" else f"on {stage}{label}"
    if kind == "library":
        return 1, (f"{path.name} imports {message}{at}: the exercise is to write {exercise.function} yourself; "
                   f"NumPy, SciPy and your own files are allowed, minivae is not")
    if kind == "syntax":
        return 2, message
    if kind == "exit":
        return 2, f"{path.name} called sys.exit({message}) {when}{at}; exit 0 would read as a pass, so it is an error"
    if kind == "stub":
        return 2, f"{exercise.function} raises NotImplementedError ({message}): not written yet"
    if kind == "missing":
        return 2, f"FILE: expected {path.name} to define a function {exercise.function}(), found none"
    if kind == "not callable":
        return 2, f"FILE: expected {exercise.function} in {path.name} to be a function, got a {message}"
    return 2, f"{path.name}: {message} {when}{at}"


def check_files(exercise: Exercise, paths, timeout: float = DEFAULT_TIMEOUT) -> list:
    """One :class:`Report` per file, all run in one child process (a report's ``error`` says what failed)."""
    paths = [check_path(p, exercise.function).resolve() for p in paths]
    cases = exercise.cases()
    job = {"paths": [str(p) for p in paths], "function": exercise.function, "site": _site_directories(),
           "cases": pickle.dumps([case.inputs for case in cases])}
    try:
        status, stdout, stderr = _run_child(pickle.dumps(job), timeout)
    except subprocess.TimeoutExpired:
        line = f"{', '.join(p.name for p in paths)} did not finish within {timeout:g} s (an endless loop? " \
               f"--timeout sets the limit)"
        return [Report(exercise, error=line) for _ in paths]
    if status != 0 or not stdout:
        if status < 0:
            how = f"was killed by {signal.Signals(-status).name}"
        else:
            how = f"ended the process with status {status} (os._exit?)"
        line = f"{', '.join(p.name for p in paths)} {how} before {exercise.function} had answered every case"
        return [Report(exercise, error=line) for _ in paths]
    try:
        with np.load(io.BytesIO(stdout), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        answers = json.loads(str(arrays.pop("tree")))
        if not isinstance(answers, list) or len(answers) != len(paths):
            raise ValueError("one answer per file")
    except (ValueError, OSError, KeyError) as exc:
        line = f"the result of {exercise.function} could not be read ({type(exc).__name__})"
        return [Report(exercise, error=line) for _ in paths]
    reports = []
    for path, answer in zip(paths, answers):
        problem = answer.get("problem") if isinstance(answer, dict) else {"kind": "exception",
                                                                          "message": "an unreadable answer"}
        if problem:
            status, line = _say(problem, exercise, path, cases)
            reports.append(Report(exercise, problem=line) if status == 1 else Report(exercise, error=line))
            continue
        try:
            results = [_decode(call["result"], arrays) for call in answer["calls"]]
            afters = [_decode(call["after"], arrays) for call in answer["calls"]]
            if len(results) != len(cases):
                raise ValueError("one result per case")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            reports.append(Report(exercise, error=f"the result of {exercise.function} could not be read "
                                                  f"({type(exc).__name__})"))
            continue
        try:
            reports.append(judge(exercise, results, afters))
        except ExerciseError as exc:
            reports.append(Report(exercise, error=f"{exc} ({path.name})"))
    printed = stderr.decode("utf-8", "replace").strip()
    for report in reports:
        report.printed = printed
    return reports


def check_file(exercise: Exercise, path, timeout: float = DEFAULT_TIMEOUT) -> Report:
    """The :class:`Report` on the function ``exercise.function`` of the file ``path``, run in a child process."""
    return check_files(exercise, [path], timeout)[0]
