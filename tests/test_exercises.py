"""The exercise checker (minivae/exercises): it passes the library's own answers, fails each typical wrong answer
with that mistake's diagnosis, and its command line lists, shows and checks."""

import inspect
import subprocess
import sys

import numpy as np
import pytest

from minivae import VAE
from minivae.exercises import EXERCISES, check, check_file, get_exercise
from minivae.exercises.catalogue import BETA, neg_elbo

MISTAKES = [(name, mistake) for name, ex in EXERCISES.items() for mistake in ex.mistakes]


def test_there_are_the_nine_exercises():
    assert list(EXERCISES) == ["affine", "activation", "kl", "reparam", "bernoulli", "gaussian", "mlp", "elbo",
                               "adam"]


@pytest.mark.parametrize("name", list(EXERCISES))
def test_the_library_answer_passes(name):
    exercise = EXERCISES[name]
    report = check(exercise, exercise.reference)
    assert report.passed, report.text()
    assert "PASS" in report.text()
    for g in report.gradients:
        assert g.error_library == 0.0
        if exercise.loss is not None:  # the finite differences really were compared
            assert g.error_fd is not None and g.error_fd < 1e-7, (g.name, g.error_fd)


@pytest.mark.parametrize("name,mistake", MISTAKES, ids=[f"{n}-{m.name}" for n, m in MISTAKES])
def test_each_typical_mistake_fails_with_its_diagnosis(name, mistake):
    report = check(EXERCISES[name], mistake.function)
    assert not report.passed
    assert report.diagnosis == [mistake.diagnosis], report.text()
    text = report.text()
    assert "WRONG" in text and f"likely mistake: {mistake.diagnosis}" in text
    assert "def " not in text  # the worked answer only when asked


def test_each_exercise_has_at_least_three_distinct_mistakes():
    for ex in EXERCISES.values():
        assert len({m.diagnosis for m in ex.mistakes}) == len(ex.mistakes) >= 3, ex.name


def test_a_factor_outside_the_catalogue_is_named():
    affine = EXERCISES["affine"]
    report = check(affine, lambda dout, x, W, b: (dout @ W.T, x.T @ dout / len(x), dout.sum(0)))
    assert report.diagnosis == ["dW is 1/N times the right answer: a factor 1/N too many (a mean where a sum "
                                "belongs?)"]
    assert [g.name for g in report.gradients if not g.ok] == ["dW"]
    wrong = next(g for g in report.gradients if g.name == "dW")
    assert wrong.n_wrong == wrong.shape[0] * wrong.shape[1] and len(wrong.wrong) == 4

    elbo = EXERCISES["elbo"]
    half_beta = check(elbo, lambda **a: [[(g * BETA for g in pair) for pair in net]
                                         for net in elbo.reference(**a)])
    assert any("beta times the right answer" in line for line in half_beta.diagnosis), half_beta.text()

    kl = EXERCISES["kl"]
    sign = check(kl, lambda dkl, mu, log_var: tuple(-g for g in kl.reference(dkl, mu, log_var)))
    assert sign.diagnosis == ["dmu is -1 times the right answer: a sign: the whole gradient has the wrong sign",
                              "dlog_var is -1 times the right answer: a sign: the whole gradient has the wrong sign"]


def test_only_some_entries_wrong_are_named_by_index():
    act = EXERCISES["activation"]

    def one_wrong(dout, x):
        dx = act.reference(dout, x).copy()
        dx[2, 1] += 1.0
        return dx

    report = check(act, one_wrong)
    assert report.gradients[0].n_wrong == 1 and report.gradients[0].wrong[0][0] == (2, 1)
    assert "dx[2, 1]: yours" in report.text()


def test_the_stubs_have_the_answer_signature_and_are_not_written():
    for name, ex in EXERCISES.items():
        source = ex.stub.read_text()
        assert f"def {ex.function}(" in source and "NotImplementedError" in source and "docs/" in source
        report = check_file(name, ex.stub)
        assert not report.passed and "not written yet" in report.text()
        stub_parameters = list(inspect.signature(check.__globals__["load_function"](ex.stub, ex.function)).parameters)
        answer_parameters = list(inspect.signature(ex.reference).parameters)
        assert stub_parameters == answer_parameters, name


def test_the_elbo_exercise_is_the_models_loss_and_its_answer_the_models_gradients():
    # An independent check of the exercise itself: the same weights in a float64 VAE give the same loss and
    # the same gradients through VAE.loss_and_grads.
    ex = EXERCISES["elbo"]
    a = ex.inputs(np.random.default_rng(0))
    model = VAE(data_dim=a["x"].shape[1], latent_dim=a["noise"].shape[2], hidden=(a["encoder"][0][0].shape[1],),
                activation="tanh", likelihood="bernoulli", dtype="float64", seed=0)
    for net in ("encoder", "decoder"):
        for layer, (W, b) in enumerate(a[net]):
            model.params.values[f"{net}.{layer}.W"][...] = W
            model.params.values[f"{net}.{layer}.b"][...] = b
    loss, grads = model.loss_and_grads(a["x"], noise=a["noise"], beta=a["beta"])
    assert float(loss) == pytest.approx(neg_elbo(**a), rel=1e-12)
    mine = ex.unpack(ex.reference(**a))
    for name, g in mine.items():
        np.testing.assert_allclose(g, grads[name], rtol=1e-10, atol=1e-13)


def test_get_exercise_names_the_choices():
    with pytest.raises(ValueError, match=r"exercise: expected one of \['activation', .*got 'nope'"):
        get_exercise("nope")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "minivae", "exercise", *args], capture_output=True, text=True,
                          timeout=60)


def test_the_command_line_lists_shows_and_checks(tmp_path):
    listed = _cli("list")
    assert listed.returncode == 0 and all(name in listed.stdout for name in EXERCISES)

    shown = _cli("show", "kl")
    assert shown.returncode == 0 and "def kl_backward(dkl, mu, log_var)" in shown.stdout
    assert "Worked answer" not in shown.stdout

    mine = tmp_path / "my_kl.py"
    mine.write_text(shown.stdout.replace(
        '    raise NotImplementedError("derive dmu and dlog_var, then replace this line")',
        "    return dkl[:, None] * mu, 0.5 * dkl[:, None] * (np.exp(log_var) - 1.0)"))
    right = _cli("check", "kl", str(mine))
    assert right.returncode == 0, right.stdout + right.stderr
    assert "PASS" in right.stdout and "Worked answer" not in right.stdout

    mine.write_text(mine.read_text().replace("(np.exp(log_var) - 1.0)", "(np.exp(0.5 * log_var) - 1.0)"))
    wrong = _cli("check", "kl", str(mine))
    assert wrong.returncode == 1 and "sigma used for sigma^2" in wrong.stdout and "Worked answer" not in wrong.stdout
    answered = _cli("check", "kl", str(mine), "--answer")
    assert answered.returncode == 1 and "Worked answer" in answered.stdout
    assert "def kl_backward(dkl, cache: KLCache)" in answered.stdout  # the library's source

    stub = _cli("check", "kl", str(get_exercise("kl").stub))
    assert stub.returncode == 1 and "not written yet" in stub.stdout


def test_the_command_line_says_what_is_missing(tmp_path):
    no_name = _cli("check")
    assert no_name.returncode == 2 and "NAME: expected an exercise name" in no_name.stderr
    no_file = _cli("check", "kl")
    assert no_file.returncode == 2 and "FILE: expected the Python file defining kl_backward()" in no_file.stderr
    absent = _cli("check", "kl", str(tmp_path / "absent.py"))
    assert absent.returncode == 2 and "found no file at" in absent.stderr
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    other = _cli("check", "kl", str(empty))
    assert other.returncode == 2 and "to define a function kl_backward()" in other.stderr
    unknown = _cli("show", "nope")
    assert unknown.returncode == 2 and "exercise: expected one of" in unknown.stderr
