r"""The exercise checker: a learner's backward pass against central differences and against minivae's own.

An :class:`Exercise` names the function the learner writes (its stub, with signature and docstring, is in
``minivae/exercises/stubs/``), draws random float64 inputs, and knows three answers for them: central differences of
the forward (``minivae/gradcheck.py``, eq. ``gc-central``), the library's backward, and a catalogue of typical wrong
answers, each with the mistake it makes. :func:`check` runs the learner's function on the inputs, compares every
gradient entry by entry, and, when one is wrong, names the entries and the likely mistake: first by matching the
learner's result against the catalogue, then by looking for a constant factor (a missing :math:`1/N`, :math:`1/S` or
:math:`\beta`, a sign) or a transposed product.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..gradcheck import numerical_gradient, relative_error

#: A gradient agrees with central differences below this relative error (eq. ``gc-relerr``): float64, step 1e-6,
#: leaves about 1e-9 on these small inputs; a wrong formula is off by order 1.
FD_TOLERANCE = 1e-6
#: Agreement with the library's own backward (and with a catalogued mistake): the same formula up to rounding.
SAME_TOLERANCE = 1e-8
#: Seed of the inputs the checker draws: the same for every run, so a learner sees the same numbers each time.
SEED = 0


@dataclass(frozen=True)
class Mistake:
    """A typical wrong answer: ``function`` has the learner's signature and computes the mistake."""

    name: str
    diagnosis: str
    function: Callable


@dataclass(frozen=True)
class Exercise:
    """One backward pass to derive.

    ``inputs(rng)`` draws the arguments of the learner's function by name; ``reference(**inputs)`` is the
    library's answer and ``unpack(result)`` turns a result into ``{gradient name: array}``. ``loss(inputs)`` is the
    scalar whose gradients these are (for an array-valued forward, the sum of its output times ``dout``), and
    ``wrt(inputs)`` the arrays of the inputs each gradient is taken with respect to, perturbed in place by the
    central differences; ``loss`` is None where the answer is not a gradient (one Adam step).
    """

    name: str
    function: str
    summary: str
    page: str  # the derivation, a path under docs/
    inputs: Callable
    reference: Callable
    unpack: Callable
    loss: Callable | None
    wrt: Callable | None
    mistakes: tuple = ()
    factors: Callable = lambda inputs: {}  # named constants of these inputs a wrong answer may be off by
    derivation: str = ""

    @property
    def stub(self) -> Path:
        return Path(__file__).resolve().parent / "stubs" / f"{self.name}.py"

    def answer(self) -> str:
        """The worked answer: the derivation's final formulas, then the source of the library's answer."""
        source = inspect.getsource(self.reference)
        parts = [f"Worked answer for {self.name!r} (derivation: docs/{self.page})", "", self.derivation.strip(), "",
                 "The library's answer, as the checker calls it:", "", source.rstrip()]
        for helper in getattr(self.reference, "library", ()):
            parts += ["", f"# {helper.__module__}.{helper.__name__}", inspect.getsource(helper).rstrip()]
        return "\n".join(parts) + "\n"


@dataclass
class GradientReport:
    name: str
    shape: tuple
    expected_shape: tuple
    error_fd: float | None  # relative error against central differences (None: not a gradient, or wrong shape)
    error_library: float | None  # against the library's own backward
    wrong: list = field(default_factory=list)  # [(index, yours, expected)], the largest disagreements first
    n_wrong: int = 0

    @property
    def ok(self) -> bool:
        return self.shape == self.expected_shape and self.error_library is not None and \
            self.error_library < FD_TOLERANCE and (self.error_fd is None or self.error_fd < FD_TOLERANCE)


@dataclass
class Report:
    exercise: Exercise
    gradients: list
    diagnosis: list
    problem: str = ""  # set when the function could not be run or its result not read

    @property
    def passed(self) -> bool:
        return not self.problem and all(g.ok for g in self.gradients)

    def text(self) -> str:
        ex = self.exercise
        against = "central differences and minivae's own backward" if ex.loss is not None else "minivae's own"
        lines = [f"exercise {ex.name}: {ex.function} on random float64 inputs, against {against}"]
        if self.problem:
            lines.append(f"  {self.problem}")
        for g in self.gradients:
            fd = "   --   " if g.error_fd is None else f"{g.error_fd:8.1e}"
            lib = "   --   " if g.error_library is None else f"{g.error_library:8.1e}"
            verdict = "ok" if g.ok else "WRONG"
            lines.append(f"  {g.name:<12} shape {str(g.shape):<10} vs differences {fd}  vs minivae {lib}  {verdict}")
            if g.shape != g.expected_shape:
                lines.append(f"      expected shape {g.expected_shape}, got {g.shape}")
            elif not g.ok:
                lines.append(f"      {g.n_wrong} of {math.prod(g.shape) or 1} entries differ; the largest:")
                for index, yours, expected in g.wrong:
                    lines.append(f"        {g.name}{list(index)}: yours {yours:+.6g}, expected {expected:+.6g}")
        for line in self.diagnosis:
            lines.append(f"likely mistake: {line}")
        if self.passed:
            lines.append(f"PASS: every gradient of {ex.function} is right.")
        else:
            wrong = sum(not g.ok for g in self.gradients)
            what = self.problem or f"{wrong} of {len(self.gradients)} wrong"
            lines.append(f"FAIL ({what}). The worked answer: minivae exercise check {ex.name} FILE --answer")
        return "\n".join(lines) + "\n"


def load_function(path, name: str) -> Callable:
    """The function ``name`` defined in the Python file ``path``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"FILE: expected a Python file defining {name}(), found no file at {path}")
    spec = importlib.util.spec_from_file_location(f"minivae_exercise_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    function = getattr(module, name, None)
    if not callable(function):
        raise ValueError(f"FILE: expected {path} to define a function {name}(), found none")
    return function


def _arrays(exercise: Exercise, result) -> dict:
    out = exercise.unpack(result)
    return {name: np.asarray(value, dtype=np.float64) for name, value in out.items()}


def _close(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape and relative_error(a[k], b[k]) < SAME_TOLERANCE
                                        for k in a)


def _numeric(exercise: Exercise, seed: int) -> dict:
    """Central differences of the exercise's loss with respect to each input named by ``wrt``."""
    inputs = exercise.inputs(np.random.default_rng(seed))
    targets = exercise.wrt(inputs)
    return {name: numerical_gradient(lambda: exercise.loss(inputs), array) for name, array in targets.items()}


def _factor(name: str, yours: np.ndarray, expected: np.ndarray, factors: dict) -> str | None:
    """'yours = c * expected' with c a named constant of the inputs (N, S, beta, 2, -1, ...), said in words."""
    if yours.shape != expected.shape:
        if yours.shape == expected.T.shape and relative_error(yours.T, expected) < SAME_TOLERANCE:
            return f"{name} is the transpose of the right answer: a transposed product (expected shape " \
                   f"{expected.shape}, got {yours.shape}); check which side each factor multiplies from"
        return None
    scale = float(np.sum(expected * expected))
    if scale == 0.0:
        return None
    c = float(np.sum(yours * expected)) / scale
    if relative_error(yours, c * expected) > SAME_TOLERANCE:
        return None
    named = {"-1": (-1.0, "a sign: the whole gradient has the wrong sign"),
             "2": (2.0, "a factor 2: a 1/2 is missing"), "1/2": (0.5, "a factor 1/2 too many")}
    for symbol, value in factors.items():
        named[symbol] = (value, f"a factor {symbol} too many: 1/{symbol} is missing" if value > 1 else
                         f"a factor {symbol} too many")
        named[f"1/{symbol}"] = (1.0 / value, f"a factor 1/{symbol} too many (a mean where a sum belongs?)")
        named[f"-{symbol}"] = (-value, f"a sign, and a factor {symbol}")
    for symbol, (value, words) in named.items():
        if abs(c - value) < 1e-6 * max(1.0, abs(value)):
            return f"{name} is {symbol} times the right answer: {words}"
    return f"{name} is {c:.6g} times the right answer: a constant factor is wrong"


def check(exercise: Exercise, function: Callable, seed: int = SEED) -> Report:
    """Run ``function`` (the learner's) on the exercise's random inputs and judge every gradient it returns."""
    expected = _arrays(exercise, exercise.reference(**exercise.inputs(np.random.default_rng(seed))))
    numeric = _numeric(exercise, seed) if exercise.loss is not None else {}
    try:
        yours = _arrays(exercise, function(**exercise.inputs(np.random.default_rng(seed))))
    except NotImplementedError:
        return Report(exercise, [], [], f"{exercise.function} raises NotImplementedError: not written yet")
    except Exception as exc:  # the learner's code may fail in any way: report it, do not crash the checker
        return Report(exercise, [], [], f"{exercise.function} raised {type(exc).__name__}: {exc}")

    missing = sorted(set(expected) - set(yours))
    if missing:
        return Report(exercise, [], [], f"the result has no {', '.join(missing)}")
    gradients = []
    for name, want in expected.items():
        got = yours[name]
        report = GradientReport(name, got.shape, want.shape, None, None)
        if got.shape == want.shape:
            report.error_library = relative_error(got, want)
            if name in numeric:
                report.error_fd = relative_error(got, numeric[name])
            if not report.ok:
                scale = max(np.max(np.abs(got)), np.max(np.abs(want)), 1e-300)
                bad = np.abs(got - want) > FD_TOLERANCE * scale
                report.n_wrong = int(bad.sum())
                order = np.argsort(-np.abs(got - want), axis=None)[:min(report.n_wrong, 4)]
                report.wrong = [(tuple(int(i) for i in np.unravel_index(k, want.shape)), float(got.flat[k]),
                                 float(want.flat[k])) for k in order]
        gradients.append(report)

    diagnosis = []
    if not all(g.ok for g in gradients):
        for mistake in exercise.mistakes:
            if _close(yours, _arrays(exercise, mistake.function(**exercise.inputs(np.random.default_rng(seed))))):
                diagnosis.append(mistake.diagnosis)
                break
        else:
            factors = exercise.factors(exercise.inputs(np.random.default_rng(seed)))
            for g in gradients:
                if not g.ok:
                    said = _factor(g.name, yours[g.name], expected[g.name], factors)
                    if said:
                        diagnosis.append(said)
    return Report(exercise, gradients, diagnosis)
