r"""Exercises: derive a function of the VAE yourself, and have it checked against minivae's answer.

For each there is a stub (signature and docstring, raising NotImplementedError) in ``minivae/exercises/stubs/``.
:func:`check_file` runs a filled-in copy in a child process with a time limit (:mod:`.sandbox`) on several cases
(:mod:`.checker`); the answers and the verdict stay in this process. It names what is wrong and the likely mistake,
and keeps the worked answer for when it is asked for. From the command line::

    minivae exercise list
    minivae exercise show kl > my_kl.py        # the stub; fill in the body
    minivae exercise check kl my_kl.py         # exit 0 right, 1 wrong, 2 could not run; --answer: the worked answer
"""

from .catalogue import EXERCISES
from .checker import FD_TOLERANCE, Case, Exercise, ExerciseError, Mistake, Report, check, judge
from .sandbox import DEFAULT_TIMEOUT, check_files


def get_exercise(name: str) -> Exercise:
    """The exercise called ``name`` (see :data:`EXERCISES`)."""
    if not isinstance(name, str) or name not in EXERCISES:
        raise ValueError(f"exercise: expected one of {sorted(EXERCISES)}, got {name!r}")
    return EXERCISES[name]


def check_file(name: str, path, timeout: float = DEFAULT_TIMEOUT) -> Report:
    """Check the function the exercise asks for, as defined in the Python file ``path``, in a child process."""
    return check_files(get_exercise(name), [path], timeout)[0]


__all__ = ["DEFAULT_TIMEOUT", "EXERCISES", "FD_TOLERANCE", "Case", "Exercise", "ExerciseError", "Mistake", "Report",
           "check", "check_file", "check_files", "get_exercise", "judge"]
