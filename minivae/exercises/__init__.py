r"""Exercises: derive a backward pass yourself, and have it checked by finite differences and against minivae.

For each backward pass a learner should derive there is a stub (signature and docstring, raising
NotImplementedError) in ``minivae/exercises/stubs/``, and :func:`check` runs a filled-in copy against central
differences (``minivae/gradcheck.py``) and the library's own backward, names the wrong entries and the likely mistake,
and keeps the worked answer for when it is asked for. From the command line::

    minivae exercise list
    minivae exercise show kl > my_kl.py        # the stub; fill in the body
    minivae exercise check kl my_kl.py         # --answer also prints the worked answer
"""

from .catalogue import EXERCISES
from .checker import FD_TOLERANCE, Exercise, Mistake, Report, check, load_function


def get_exercise(name: str) -> Exercise:
    """The exercise called ``name`` (see :data:`EXERCISES`)."""
    if not isinstance(name, str) or name not in EXERCISES:
        raise ValueError(f"exercise: expected one of {sorted(EXERCISES)}, got {name!r}")
    return EXERCISES[name]


def check_file(name: str, path) -> Report:
    """Check the function the exercise asks for, as defined in the Python file ``path``."""
    exercise = get_exercise(name)
    return check(exercise, load_function(path, exercise.function))


__all__ = ["EXERCISES", "FD_TOLERANCE", "Exercise", "Mistake", "Report", "check", "check_file", "get_exercise",
           "load_function"]
