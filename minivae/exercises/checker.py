r"""The exercise checker: a learner's function against minivae's own answer, on several cases, judged here.

An :class:`Exercise` names the function the learner writes (its stub is in ``minivae/exercises/stubs/``) and draws
its :class:`Case`\ s: several shapes and seeds (a batch of one, non-square weights, :math:`S > 1` where there are
samples), varied hyper-parameters and the numerical extremes the exercise is about. For each case it knows the
library's answer and, on the regular cases, central differences of the forward (``minivae/gradcheck.py``,
eq. ``gc-central``), an oracle that does not trust the library. :func:`judge` compares every returned array with the
answer, case by case, and names what is wrong in the learner's words: a complex result, a dtype, a shape (a
transposed product), NaN or inf, an all-zero gradient, a constant factor named by its meaning (:math:`1/N`,
:math:`1/S`, :math:`\beta`, :math:`\tfrac12`, a sign), a catalogued mistake, an input changed in place.

Where the learner's code runs is :mod:`minivae.exercises.sandbox` (a child process, for files) or this process
(:func:`check`, for a function of one's own notebook); the answers and the verdict are always computed here.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..gradcheck import TOLERANCE, numerical_gradient, relative_error

#: A result agrees with the answer (and the answer with central differences, eq. ``gc-relerr``) below this
#: relative error, the library's own gradient-check tolerance: float64, step 1e-6, leaves about 1e-9 on these
#: small inputs; a wrong formula is off by order 1.
FD_TOLERANCE = TOLERANCE
#: Agreement with a catalogued mistake or with a constant times the answer: the same formula up to rounding.
SAME_TOLERANCE = 1e-8
#: Each entry must also agree on its own, within FD_TOLERANCE of its size plus this: an extreme case mixes entries
#: of 1e12 and of 1, and the large ones must not hide the small. The inputs are of order 1 in every case, so
#: rounding leaves far less than this.
ENTRY_FLOOR = 1e-9
#: Entries listed for a wrong array.
SHOWN = 4


class ExerciseError(ValueError):
    """The learner's file could not be loaded or run, or its result not read: one line, exit status 2."""


@dataclass(frozen=True)
class Mistake:
    """A typical wrong answer: ``function`` has the learner's signature and computes the mistake."""

    name: str
    diagnosis: str
    function: Callable


@dataclass(frozen=True)
class Case:
    """One call of the learner's function: its keyword ``inputs``, a ``label`` saying what the case is about, and
    whether central differences are compared on it (``fd``; off at the extremes, where a finite step misleads)."""

    label: str
    inputs: dict
    fd: bool = False


@dataclass(frozen=True)
class Exercise:
    """One function to derive.

    ``cases()`` draws the cases (the same every run); ``reference(**inputs)`` is the library's answer and
    ``returns`` the shape of a result with the stub's names at its leaves, e.g. ``("dmu", "dlog_var")``.
    ``loss(inputs)`` is the scalar the gradients are of (for an array-valued forward, the sum of its output times
    ``dout``) and ``wrt(inputs)`` the arrays each named gradient is taken with respect to; both None where the
    answer is not a gradient. ``factors(inputs)`` names constants of a case a wrong answer may be off by
    (``{"N": 4.0}``), ``may_change`` the inputs the stub allows to be updated in place, and ``diagnose(inputs,
    yours, expected)`` says, for a wrong case, which stage went wrong where the exercise can tell.
    """

    name: str
    function: str
    summary: str
    page: str  # the derivation, a path under docs/
    cases: Callable
    reference: Callable
    returns: tuple | str
    loss: Callable | None = None
    wrt: Callable | None = None
    mistakes: tuple = ()
    factors: Callable = lambda inputs: {}
    may_change: tuple = ()
    diagnose: Callable | None = None
    covers: str = ""  # what the cases are about, said in the report's first line
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
            parts += ["", f"# {helper.__module__}.{helper.__qualname__}", inspect.getsource(helper).rstrip()]
        return "\n".join(parts) + "\n"


def describe(spec) -> str:
    """``("dx", (("dW1", "db1"),))`` as ``(dx, [(dW1, db1)])``, the way a stub writes it."""
    if isinstance(spec, str):
        return spec
    if all(isinstance(s, tuple) for s in spec):  # a list of layers
        return "[" + ", ".join(describe(s) for s in spec) + "]"
    return "(" + ", ".join(describe(s) for s in spec) + ")"


def unpack(spec, value, what: str) -> dict:
    """``{leaf name: array}`` from a result shaped like ``spec``; :class:`ExerciseError` when it is not."""
    if isinstance(spec, str):
        if isinstance(value, np.ndarray) and value.dtype.kind in "biufc":
            return {spec: value}
        raise ExerciseError(f"{what} returned {_kind(value)} where the array {spec} belongs")
    if not isinstance(value, (tuple, list)) or len(value) != len(spec):
        raise ExerciseError(f"{what} returned {_kind(value)} where {describe(spec)} belongs "
                            f"({len(spec)} items)")
    out = {}
    for s, v in zip(spec, value):
        out.update(unpack(s, v, what))
    return out


def _kind(value) -> str:
    if isinstance(value, np.ndarray):
        return f"one array of shape {value.shape}" if value.dtype.kind in "biufc" else "an array of objects"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} items"
    return "None" if value is None else f"a {type(value).__name__}"


def leaves(value, prefix: str) -> dict:
    """The arrays of an input, named as a stub does: ``weights`` [(W1, b1), (W2, b2)] gives ``weights W1``, ..."""
    if isinstance(value, np.ndarray):
        return {prefix: value}
    if isinstance(value, (list, tuple)):
        out = {}
        for layer, item in enumerate(value):
            if isinstance(item, (list, tuple)) and len(item) == 2:
                out.update(leaves(item[0], f"{prefix} W{layer + 1}"))
                out.update(leaves(item[1], f"{prefix} b{layer + 1}"))
            else:
                out.update(leaves(item, f"{prefix}[{layer}]"))
        return out
    return {}


def numeric_gradients(exercise: Exercise, inputs: dict) -> dict:
    """Central differences of the exercise's loss with respect to each array named by ``wrt``."""
    targets = exercise.wrt(inputs)
    return {name: numerical_gradient(lambda: exercise.loss(inputs), array) for name, array in targets.items()}


@dataclass
class Verdict:
    """One returned array on one case."""

    ok: bool
    kind: str = ""  # complex, dtype, shape, transposed, nan, inf, zero, value
    lines: list = field(default_factory=list)


def _index(flat: int, shape: tuple) -> str:
    return str(list(int(i) for i in np.unravel_index(flat, shape))) if shape else ""


def compare(name: str, yours: np.ndarray, want: np.ndarray) -> Verdict:
    """``yours`` against the answer ``want`` (float64): the first thing wrong, said in words."""
    if yours.dtype.kind == "c":
        return Verdict(False, "complex", [f"{name} is complex ({yours.dtype}): a square root or logarithm of a "
                                          f"negative number? The answer is real"])
    if yours.dtype != np.float64:
        return Verdict(False, "dtype", [f"{name} has dtype {yours.dtype}; expected float64, the inputs' dtype"])
    if yours.shape != want.shape:
        if yours.shape == want.T.shape and yours.ndim == 2 and relative_error(yours.T, want) < FD_TOLERANCE:
            return Verdict(False, "transposed", [f"{name} is the transpose of the right answer: expected shape "
                                                 f"{want.shape}, got {yours.shape} (a transposed product)"])
        return Verdict(False, "shape", [f"{name} has shape {yours.shape}; expected {want.shape}"])
    for bad, word in ((np.isnan(yours) & ~np.isnan(want), "nan"), (np.isinf(yours) & ~np.isinf(want), "inf")):
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            label = "NaN" if word == "nan" else "inf"
            return Verdict(False, word, [f"{name} has {int(bad.sum())} {label} entr{'y' if bad.sum() == 1 else 'ies'}"
                                         f" (the first {name}{_index(first, want.shape)}) where the answer is "
                                         f"{want.flat[first]:+.6g}: an overflow? (exp of a large number, a "
                                         f"division by an underflowed 0)"])
    finite = np.isfinite(want)
    if not np.array_equal(np.isfinite(yours), finite) or not np.array_equal(yours[~finite], want[~finite]):
        return Verdict(False, "inf", [f"{name} is not infinite where the answer is"])
    if not yours.any() and want.any():
        return Verdict(False, "zero", [f"{name} is all zeros: the gradient never reached it?"])
    diff = np.where(finite, np.abs(yours - want), 0.0)
    scale = max(float(np.max(np.abs(np.where(finite, yours, 0.0)), initial=0.0)),
                float(np.max(np.abs(np.where(finite, want, 0.0)), initial=0.0)), 1e-300)
    size = np.where(finite, np.abs(want), 0.0)
    bad = (diff > FD_TOLERANCE * scale) | (diff > FD_TOLERANCE * size + ENTRY_FLOOR)  # eq. gc-relerr, then each
    if not bad.any():
        return Verdict(True)
    n_wrong = int(bad.sum())
    lines = [f"{n_wrong} of {math.prod(want.shape) or 1} entries differ; the largest:"]
    for k in np.argsort(-np.where(bad, diff / (size + ENTRY_FLOOR), 0.0), axis=None)[:min(n_wrong, SHOWN)]:
        lines.append(f"  {name}{_index(int(k), want.shape)}: yours {yours.flat[k]:+.6g}, "
                     f"expected {want.flat[k]:+.6g}")
    return Verdict(False, "value", lines)


def constant_factor(name: str, yours: list, wants: list, factors: list) -> str | None:
    """'dW is N times the right answer ...' when ``yours = c * want`` on every case, c the same named constant
    (``factors``: one ``{symbol: value}`` per case) or the same number."""
    cs = []
    for y, w in zip(yours, wants):
        scale = float(np.sum(w * w))
        if scale == 0.0 or not np.all(np.isfinite(y)):
            continue
        c = float(np.sum(y * w)) / scale
        if relative_error(y, c * w) > SAME_TOLERANCE:
            return None
        cs.append(c)
    if not cs:
        return None
    candidates = [("-1", [-1.0] * len(factors), "a sign: the whole gradient has the wrong sign"),
                  ("2", [2.0] * len(factors), "twice the right answer: a 1/2 is missing"),
                  ("1/2", [0.5] * len(factors), "half the right answer: a 1/2 too many")]
    for symbol in sorted({s for f in factors for s in f}):
        if all(symbol in f for f in factors):
            meaning = FACTOR_MEANING.get(symbol, "")
            values = [f[symbol] for f in factors]
            candidates.append((symbol, values, f"the 1/{symbol} is missing, or a factor {symbol} too many"
                               + (f" ({meaning})" if meaning else "")))
            candidates.append((f"1/{symbol}", [1.0 / v for v in values],
                               f"a factor 1/{symbol} too many (a mean where a sum belongs?), or {symbol} missing"
                               + (f" ({meaning})" if meaning else "")))
    for symbol, values, words in candidates:
        if all(abs(c - v) < 1e-6 * max(1.0, abs(v)) for c, v in zip(cs, values)):
            return f"{name} is {symbol} times the right answer: {words}"
    if max(cs) - min(cs) < 1e-9 * max(1.0, abs(cs[0])):
        return f"{name} is {cs[0]:.6g} times the right answer: a constant factor is wrong"
    return None


#: What each named constant is; a factor is said with its meaning.
FACTOR_MEANING = {"N": "N is the batch size: the loss is a mean over the N examples",
                  "S": "S is the number of samples: the reconstruction term is a mean over the S samples",
                  "S N": "the reconstruction term is a mean over the S samples and the N examples",
                  "beta": "beta weighs the KL term"}


@dataclass
class Report:
    """The verdict on one function: ``status`` 0 right, 1 wrong, 2 could not be run (``error``, one line)."""

    exercise: Exercise
    verdicts: dict = field(default_factory=dict)  # name -> [Verdict per case]
    fd_errors: dict = field(default_factory=dict)  # name -> relative error against central differences
    diagnosis: list = field(default_factory=list)
    mutated: list = field(default_factory=list)  # (input name, case number)
    problem: str = ""  # a wrong answer that is not about one array (the library imported, ...)
    error: str = ""  # the function could not be run
    printed: str = ""  # what the learner's file printed (it goes to stderr in the child process)

    @property
    def passed(self) -> bool:
        return not self.error and not self.problem and not self.mutated and \
            all(v.ok for vs in self.verdicts.values() for v in vs)

    @property
    def status(self) -> int:
        return 2 if self.error else 0 if self.passed else 1

    def text(self) -> str:
        ex = self.exercise
        cases = ex.cases()
        lines = [f"exercise {ex.name}: {ex.function} on {len(cases)} cases ({ex.covers or 'shapes and seeds'}), "
                 f"against minivae's answer" + (" and central differences" if ex.loss is not None else "")]
        if self.error:
            return "\n".join(lines + [f"ERROR: {self.error}"]) + "\n"
        if self.problem:
            lines.append(f"  {self.problem}")
        for name, verdicts in self.verdicts.items():
            bad = [i for i, v in enumerate(verdicts) if not v.ok]
            fd = self.fd_errors.get(name)
            fd_text = f"  vs differences {fd:.1e}" if fd is not None else ""
            if not bad:
                lines.append(f"  {name:<12} ok on all {len(verdicts)} cases{fd_text}")
                continue
            first = bad[0]
            lines.append(f"  {name:<12} WRONG on {len(bad)} of {len(verdicts)} cases{fd_text}")
            lines.append(f"      case {first + 1} ({cases[first].label}):")
            lines += [f"      {line}" for line in verdicts[first].lines]
        for name, case in self.mutated:
            lines.append(f"  {name} was changed in place (case {case + 1}): the caller's array must stay as it "
                         f"was; compute a new one (a = a * c, not a *= c)")
        for line in self.diagnosis:
            lines.append(f"likely mistake: {line}")
        if self.passed:
            lines.append(f"PASS: {ex.function} is right on every case.")
        else:
            wrong = sum(not all(v.ok for v in vs) for vs in self.verdicts.values())
            what = "not passed" if self.problem else f"{wrong} of {len(self.verdicts)} wrong" if wrong else \
                "an input changed in place"
            lines.append(f"FAIL ({what}). The worked answer: minivae exercise check {ex.name} FILE --answer")
        return "\n".join(lines) + "\n"


def judge(exercise: Exercise, results: list, afters: list | None = None, fd: bool = True) -> Report:
    """The verdict on ``results`` (one returned value per case, in order), ``afters`` the inputs after each call."""
    cases = exercise.cases()
    report = Report(exercise)
    yours, wants = [], []
    for case, result in zip(cases, results):
        yours.append(unpack(exercise.returns, result, exercise.function))
        wants.append({k: np.asarray(v, dtype=np.float64) for k, v in
                      unpack(exercise.returns, _as_arrays(exercise.reference(**_fresh(case))),
                             "the reference").items()})
    for name in wants[0]:
        report.verdicts[name] = [compare(name, y[name], w[name]) for y, w in zip(yours, wants)]
    if fd and exercise.loss is not None:
        for case, y in zip(cases, yours):
            if case.fd:
                for name, numeric in numeric_gradients(exercise, _fresh(case)).items():
                    if y[name].shape == numeric.shape and y[name].dtype.kind == "f":
                        report.fd_errors[name] = relative_error(y[name], numeric)
                break
    for number, (case, after) in enumerate(zip(cases, afters or [])):
        before = {}
        for key, value in case.inputs.items():
            before.update(leaves(value, key) if not isinstance(value, np.ndarray) else {key: value})
        now = {}
        for key, value in after.items():
            now.update(leaves(value, key) if not isinstance(value, np.ndarray) else {key: value})
        for name, array in before.items():
            if name.split(" ")[0] in exercise.may_change:
                continue
            if name not in now or now[name].shape != array.shape or \
                    not np.array_equal(now[name], array, equal_nan=True):
                if name not in [m for m, _ in report.mutated]:
                    report.mutated.append((name, number))
    if not all(v.ok for vs in report.verdicts.values() for v in vs):
        report.diagnosis = _diagnose(exercise, cases, yours, wants, report)
    return report


def _diagnose(exercise, cases, yours, wants, report) -> list:
    for mistake in exercise.mistakes:
        matched = 0
        for case, y in zip(cases, yours):
            try:
                with np.errstate(all="ignore"):
                    m = unpack(exercise.returns, _as_arrays(mistake.function(**_fresh(case))), "a mistake")
            except (ArithmeticError, ValueError, IndexError):
                continue
            if not all(np.all(np.isfinite(a)) for a in m.values()):
                continue
            if not all(y[k].shape == m[k].shape and y[k].dtype.kind == "f" and np.all(np.isfinite(y[k])) and
                       relative_error(y[k], m[k]) < SAME_TOLERANCE for k in m):
                break
            matched += 1
        else:
            if matched:
                return [mistake.diagnosis]
    said = []
    factors = [exercise.factors(case.inputs) for case in cases]
    for name, verdicts in report.verdicts.items():
        kinds = {v.kind for v in verdicts if not v.ok}
        if kinds == {"value"} or kinds == {"value", "zero"}:
            bad = [i for i, v in enumerate(verdicts) if not v.ok]
            words = constant_factor(name, [yours[i][name] for i in bad], [wants[i][name] for i in bad],
                                    [factors[i] for i in bad])
            if words:
                said.append(words)
    if exercise.diagnose is not None:
        for i, case in enumerate(cases):
            if any(not vs[i].ok for vs in report.verdicts.values()):
                stage = exercise.diagnose(_fresh(case), yours[i], wants[i])
                if stage:
                    said += stage
                    break
    return said


def _fresh(case: Case) -> dict:
    """A deep copy of a case's inputs: nothing a function does to them reaches the next call."""
    def copy(value):
        if isinstance(value, np.ndarray):
            return value.copy()
        if isinstance(value, (list, tuple)):
            return type(value)(copy(v) for v in value)
        return value
    return {k: copy(v) for k, v in case.inputs.items()}


def _as_arrays(value):
    """Numbers as 0-d arrays, sequences kept: the form a result has after crossing from the child process."""
    if isinstance(value, (tuple, list)):
        return type(value)(_as_arrays(v) for v in value)
    if isinstance(value, (np.ndarray, np.generic, int, float, complex)) and not isinstance(value, bool):
        return np.asarray(value)
    return value


def check(exercise: Exercise, function: Callable) -> Report:
    """Judge ``function`` in this process, on every case: for a function of one's own (a notebook). A file is
    checked in a child process by :func:`minivae.exercises.check_file`."""
    results, afters = [], []
    for number, case in enumerate(exercise.cases()):
        inputs = _fresh(case)
        try:
            with np.errstate(all="ignore"):
                result = function(**inputs)
        except NotImplementedError:
            return Report(exercise, error=f"{exercise.function} raises NotImplementedError: not written yet")
        except Exception as exc:  # the learner's code may fail in any way: say it in one line
            text = " ".join(str(exc).split())
            return Report(exercise, error=f"{exercise.function} raised {type(exc).__name__}: {text} "
                                          f"(case {number + 1}: {case.label})")
        results.append(_as_arrays(result))
        afters.append(inputs)
    try:
        return judge(exercise, results, afters)
    except ExerciseError as exc:
        return Report(exercise, error=str(exc))
