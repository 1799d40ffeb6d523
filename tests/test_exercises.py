"""The exercise checker (minivae/exercises): it passes the library's own answers and a second, differently written
correct form of each exercise (tests/exercise_solutions/, run as files in a child process); it fails a catalogue of
wrong ones, each with what is wrong said in the learner's words; a file that cannot be loaded or run ends in one
line and exit status 2; and the learner's file cannot reach the judge. Files are checked in one child process per
batch (``check_files``), to keep this file fast."""

import inspect
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minivae import VAE
from minivae.cli import main
from minivae.exercises import EXERCISES, check, check_file, check_files, get_exercise
from minivae.gradcheck import TOLERANCE
from minivae.exercises.bound import bound_wrong, log_weights, neg_iwae
from minivae.exercises.capstone import neg_elbo

SOLUTIONS = Path(__file__).resolve().parent / "exercise_solutions"
MISTAKES = [(name, mistake) for name, ex in EXERCISES.items() for mistake in ex.mistakes]


def test_there_are_the_fourteen_exercises():
    assert list(EXERCISES) == ["affine", "activation", "kl", "reparam", "bernoulli", "gaussian", "mlp", "adam",
                               "score", "iwae", "forward", "elbo", "elbo_gaussian", "iwae_grad"]


@pytest.mark.parametrize("name", list(EXERCISES))
def test_the_library_answer_passes_and_agrees_with_central_differences(name):
    exercise = EXERCISES[name]
    report = check(exercise, exercise.reference)
    assert report.passed and report.status == 0, report.text()
    assert "PASS" in report.text()
    if exercise.loss is not None:  # the independent oracle really was compared
        assert set(report.fd_errors) == set(exercise.wrt(exercise.cases()[0].inputs))
        assert max(report.fd_errors.values()) < 1e-7, report.fd_errors


def test_each_exercise_has_several_cases_a_batch_of_one_and_its_own_stub():
    for name, ex in EXERCISES.items():
        cases = ex.cases()
        assert len(cases) >= 3 and sum(c.fd for c in cases) == (ex.loss is not None), name
        assert any("of one" in c.label or "first step" in c.label for c in cases), name
        source = ex.stub.read_text()
        assert f"def {ex.function}(" in source and "NotImplementedError" in source and "docs/" in source
        namespace = {}
        exec(compile(source, str(ex.stub), "exec"), namespace)
        assert list(inspect.signature(namespace[ex.function]).parameters) == \
            list(inspect.signature(ex.reference).parameters), name


def test_the_cases_reach_the_extremes():
    kl = [c.inputs["log_var"] for c in EXERCISES["kl"].cases()]
    assert max(np.abs(v).max() for v in kl) == 30.0
    assert max(np.abs(c.inputs["log_var"]).max() for c in EXERCISES["gaussian"].cases()) == 30.0
    assert max(np.abs(c.inputs["logits"]).max() for c in EXERCISES["bernoulli"].cases()) == 800.0
    assert min(c.inputs["v"].min() for c in EXERCISES["adam"].cases()) < 1e-18
    adam = EXERCISES["adam"].cases()
    for key in ("beta1", "beta2", "eps", "lr", "t"):
        assert len({c.inputs[key] for c in adam}) >= 3, key
    assert len({c.inputs["beta"] for c in EXERCISES["elbo"].cases()}) == 3
    assert {c.inputs["noise"].shape[0] for c in EXERCISES["elbo"].cases()} >= {1, 3}
    bound = EXERCISES["iwae_grad"].cases()
    assert {c.inputs["noise"].shape[0] for c in bound} >= {1, 3, 5} and len({c.inputs["beta"] for c in bound}) == 3
    log_w = log_weights(**bound[-1].inputs)
    assert log_w.max() < 0 and (np.exp(log_w).sum(axis=0) == 0).any()  # every sample of an example underflows


@pytest.mark.parametrize("name,mistake", MISTAKES, ids=[f"{n}-{m.name}" for n, m in MISTAKES])
def test_each_typical_mistake_fails_with_its_diagnosis(name, mistake):
    report = check(EXERCISES[name], mistake.function)
    assert report.status == 1
    assert report.diagnosis == [mistake.diagnosis], report.text()
    text = report.text()
    assert "WRONG" in text and f"likely mistake: {mistake.diagnosis}" in text
    assert "def " not in text  # the worked answer only when asked


def test_each_exercise_has_at_least_three_distinct_mistakes():
    for ex in EXERCISES.values():
        assert len({m.diagnosis for m in ex.mistakes}) == len(ex.mistakes) >= 3, ex.name


def _scaled(exercise, factor):
    def wrong(**a):
        result = exercise.reference(**a)
        return [[tuple(g * factor(a) for g in pair) for pair in net] for net in result]
    return wrong


def test_a_constant_factor_is_named_by_its_meaning():
    affine = EXERCISES["affine"]
    report = check(affine, lambda dout, x, W, b: (dout @ W.T, x.T @ dout / len(x), dout.sum(0)))
    assert report.diagnosis == ["dW is 1/N times the right answer: a factor 1/N too many (a mean where a sum "
                                "belongs?), or N missing (N is the batch size: the loss is a mean over the N "
                                "examples)"], report.text()
    elbo = EXERCISES["elbo"]
    times_s = check(elbo, _scaled(elbo, lambda a: a["noise"].shape[0]))
    said = [line for line in times_s.diagnosis if " times the right answer" in line]
    assert len(said) == 8 and all(
        line.endswith("is S times the right answer: the 1/S is missing, or a factor S too many (S is the number of "
                      "samples: the reconstruction term is a mean over the S samples)") for line in said)
    over_beta = check(elbo, _scaled(elbo, lambda a: 1 / a["beta"]))
    assert "is 1/beta times the right answer" in over_beta.diagnosis[0]
    kl = EXERCISES["kl"]
    sign = check(kl, lambda dkl, mu, log_var: tuple(-g for g in kl.reference(dkl, mu, log_var)))
    assert sign.diagnosis == ["dmu is -1 times the right answer: a sign: the whole gradient has the wrong sign",
                              "dlog_var is -1 times the right answer: a sign: the whole gradient has the wrong sign"]
    half = check(kl, lambda dkl, mu, log_var: (kl.reference(dkl, mu, log_var)[0] / 2, kl.reference(dkl, mu,
                                                                                                  log_var)[1]))
    assert half.diagnosis == ["dmu is 1/2 times the right answer: half the right answer: a 1/2 too many"]


def test_nan_inf_zero_complex_dtype_and_shape_are_named():
    kl = EXERCISES["kl"]
    right = kl.reference

    def say(function):
        report = check(kl, function)
        assert report.status == 1
        return report.text()

    assert "has 3 NaN entries" in say(lambda dkl, mu, log_var: (right(dkl, mu, log_var)[0],
                                                                np.where(log_var > 29, np.nan, right(dkl, mu,
                                                                                                     log_var)[1])))
    assert "has 3 inf entries" in say(lambda dkl, mu, log_var: (right(dkl, mu, log_var)[0],
                                                                np.where(log_var > 29, np.inf, right(dkl, mu,
                                                                                                     log_var)[1])))
    assert "dmu is all zeros" in say(lambda dkl, mu, log_var: (np.zeros_like(mu), right(dkl, mu, log_var)[1]))
    assert "dmu is complex (complex128)" in say(lambda dkl, mu, log_var: (right(dkl, mu, log_var)[0] + 0j,
                                                                          right(dkl, mu, log_var)[1]))
    assert "dmu has dtype float32; expected float64" in say(
        lambda dkl, mu, log_var: (right(dkl, mu, log_var)[0].astype(np.float32), right(dkl, mu, log_var)[1]))
    assert "dmu has shape (4,); expected (4, 2)" in say(lambda dkl, mu, log_var: (right(dkl, mu, log_var)[0].sum(1),
                                                                                  right(dkl, mu, log_var)[1]))
    # at log-variances of +-30 the entries are ~1e13 and ~1: the large do not hide a wrong small one
    small_wrong = say(lambda dkl, mu, log_var: (right(dkl, mu, log_var)[0],
                                                np.where(log_var < -29, 0.0, right(dkl, mu, log_var)[1])))
    assert "case 4 (log-variances +-30" in small_wrong and "3 of 6 entries differ" in small_wrong
    affine = EXERCISES["affine"]
    text = check(affine, lambda dout, x, W, b: (dout @ W.T, dout.T @ x, dout.sum(0))).text()
    assert "dW is the transpose of the right answer" in text
    one = check(kl, lambda dkl, mu, log_var: right(dkl, mu, log_var)[1])
    assert one.status == 2 and one.error == "kl_backward returned one array of shape (4, 2) where (dmu, dlog_var) " \
                                           "belongs (2 items)"


def test_the_mlp_names_its_gradients_as_the_stub_does():
    mlp = EXERCISES["mlp"]

    def wrong(dout, x, weights):
        dx, grads = mlp.reference(dout, x, weights)
        return dx, [grads[0], (grads[1][0] * 2, grads[1][1])]

    text = check(mlp, wrong).text()
    assert "  dW2          WRONG" in text and "dW2 is 2 times the right answer" in text and "layer" not in text


def _elbo_wrong(dlog_var_kl=1.0, dmu_z=1.0, first_layer=1.0, decoder=1.0):
    from minivae.exercises.capstone import TANH, elbo_parts
    from minivae.mlp import mlp_backward
    from minivae.reparam import join_head

    def wrong(x, noise, encoder, decoder_weights, beta):
        (mu_z, lv_z), (mu_kl, lv_kl), cache, dec = elbo_parts(x, noise, encoder, decoder_weights, beta)
        _, enc = mlp_backward(join_head(dmu_z * mu_z + mu_kl, lv_z + dlog_var_kl * lv_kl), cache, TANH,
                              need_dx=False)
        return [(enc[0][0] * first_layer, enc[0][1]), enc[1]], [tuple(g * decoder for g in pair) for pair in dec]
    return lambda x, noise, encoder, decoder, beta: wrong(x, noise, encoder, decoder, beta)


def test_the_elbo_says_which_stage_is_wrong():
    elbo = EXERCISES["elbo"]
    no_kl = check(elbo, _elbo_wrong(dlog_var_kl=0.0)).diagnosis
    assert any("your dlog_var (the gradient reaching the encoder's output) has no KL part" in d for d in no_kl)
    assert not any("your dmu" in d for d in no_kl)
    kl_beta = check(elbo, _elbo_wrong(dlog_var_kl=2.0)).diagnosis
    assert any("your dlog_var is wrong in its KL part: the KL part of dlog_var is 2 times" in d for d in kl_beta)
    z_path = check(elbo, _elbo_wrong(dmu_z=0.5)).diagnosis
    assert any("your dmu is wrong in its path through z (the reparameterization's backward or what reaches z): "
               "the part through z of dmu is 1/2 times the right answer" in d for d in z_path), z_path
    first = check(elbo, _elbo_wrong(first_layer=1.5)).diagnosis
    assert any("your dmu and dlog_var are right: the encoder's MLP backward is wrong" in d for d in first), first
    dec = check(elbo, _elbo_wrong(decoder=1.5)).diagnosis
    assert any("the decoder's gradients are wrong" in d for d in dec), dec


def test_the_elbo_exercises_are_the_models_loss_and_gradients():
    # An independent check of the exercise itself: the same weights in a float64 VAE give the same loss and
    # the same gradients through VAE.loss_and_grads.
    for name, likelihood in (("elbo", "bernoulli"), ("elbo_gaussian", "gaussian_per_example")):
        ex = EXERCISES[name]
        a = ex.cases()[0].inputs
        model = VAE(data_dim=a["x"].shape[1], latent_dim=a["noise"].shape[2],
                    hidden=(a["encoder"][0][0].shape[1],), activation="tanh", likelihood=likelihood,
                    dtype="float64", seed=0)
        shapes = {k: v.shape for k, v in model.params.values.items()}
        for net in ("encoder", "decoder"):
            for layer, (W, b) in enumerate(a[net]):
                if shapes[f"{net}.{layer}.W"] != W.shape:
                    pytest.fail(f"{name}: {net}.{layer}.W has shape {shapes[f'{net}.{layer}.W']}, not {W.shape}")
                model.params.values[f"{net}.{layer}.W"][...] = W
                model.params.values[f"{net}.{layer}.b"][...] = b
        loss, grads = model.loss_and_grads(a["x"], noise=a["noise"], beta=a["beta"])
        assert float(loss) == pytest.approx(neg_elbo(**a, gaussian=name == "elbo_gaussian"), rel=1e-12)
        mine = dict(zip([n for pair in ex.returns for layer in pair for n in layer],
                        [g for net in ex.reference(**a) for pair in net for g in pair]))
        for key, g in mine.items():
            net, param = key.split(" ")
            np.testing.assert_allclose(g, grads[f"{net}.{int(param[2:]) - 1}.{param[1]}"], rtol=1e-10,
                                       atol=1e-13)


def _model_with(a, objective):
    """A float64 VAE holding the exercise's weights, trained on ``objective`` with the case's S samples."""
    model = VAE(data_dim=a["x"].shape[1], latent_dim=a["noise"].shape[2], hidden=(a["encoder"][0][0].shape[1],),
                activation="tanh", likelihood="bernoulli", objective=objective, k_train=a["noise"].shape[0],
                dtype="float64", seed=0)
    for net in ("encoder", "decoder"):
        for layer, (W, b) in enumerate(a[net]):
            assert model.params.values[f"{net}.{layer}.W"].shape == W.shape, (net, layer)
            model.params.values[f"{net}.{layer}.W"][...] = W
            model.params.values[f"{net}.{layer}.b"][...] = b
    return model


def _by_name(result):
    """{"encoder dW1": ..., ...} from (encoder_grads, decoder_grads)."""
    names = [n for pair in EXERCISES["iwae_grad"].returns for layer in pair for n in layer]
    return dict(zip(names, [g for net in result for pair in net for g in pair]))


@pytest.mark.parametrize("objective", ["iwae", "iwae-dreg"])
def test_the_bound_exercise_is_the_models_loss_and_gradients(objective):
    # The answer (from minivae.iwae's pieces) and the catalogue's DReG mistake (plain NumPy) are the gradients
    # VAE.backward gives a float64 model with the same weights, on every case, the extreme one included.
    for a in [case.inputs for case in EXERCISES["iwae_grad"].cases()]:
        model = _model_with(a, objective)
        loss, grads = model.loss_and_grads(a["x"], noise=a["noise"], beta=a["beta"])
        assert float(loss) == pytest.approx(neg_iwae(**a), rel=1e-12)
        mine = EXERCISES["iwae_grad"].reference(**a) if objective == "iwae" else bound_wrong(**a, dreg=True)
        for key, g in _by_name(mine).items():
            net, param = key.split(" ")
            np.testing.assert_allclose(g, grads[f"{net}.{int(param[2:]) - 1}.{param[1]}"], rtol=1e-9,
                                       atol=1e-12, err_msg=key)


def _independent_neg_iwae(a):
    """The loss written again without minivae: scipy's logsumexp over the samples."""
    from scipy.special import logsumexp

    def mlp(h, weights):
        for W, b in weights[:-1]:
            h = np.tanh(h @ W + b)
        return h @ weights[-1][0] + weights[-1][1]

    S, N, K = a["noise"].shape
    mu, log_var = np.split(mlp(a["x"], a["encoder"]), 2, axis=1)
    z = mu + np.exp(log_var / 2) * a["noise"]
    logits = mlp(z.reshape(S * N, K), a["decoder"]).reshape(S, N, -1)
    log_px = np.sum(a["x"] * logits - np.logaddexp(0, logits), axis=-1)
    log_pz = np.sum(-0.5 * z ** 2 - 0.5 * np.log(2 * np.pi), axis=-1)
    log_qz = np.sum(-0.5 * (z - mu) ** 2 / np.exp(log_var) - 0.5 * log_var - 0.5 * np.log(2 * np.pi), axis=-1)
    return -np.mean(logsumexp(log_px + a["beta"] * (log_pz - log_qz), axis=0) - np.log(S))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), N=st.integers(1, 4), D=st.integers(1, 5), H=st.integers(1, 4),
       K=st.integers(1, 3), S=st.integers(1, 6), beta=st.floats(0.1, 1.0))
def test_the_bound_exercise_answer_is_central_differences_on_random_shapes(seed, N, D, H, K, S, beta):
    from minivae.exercises.bound import bound_inputs
    from minivae.gradcheck import numerical_gradient, relative_error

    a = bound_inputs(np.random.default_rng(seed), N, D, H, K, S, beta)
    assert _independent_neg_iwae(a) == pytest.approx(neg_iwae(**a), rel=1e-12)
    for key, g in _by_name(EXERCISES["iwae_grad"].reference(**a)).items():
        net, param = key.split(" ")
        array = a[net][int(param[2:]) - 1][0 if param[1] == "W" else 1]
        numeric = numerical_gradient(lambda: _independent_neg_iwae(a), array)
        assert relative_error(g, numeric) < TOLERANCE, (key, relative_error(g, numeric))


def test_get_exercise_names_the_choices():
    with pytest.raises(ValueError, match=r"exercise: expected one of \['activation', .*got 'nope'"):
        get_exercise("nope")


# --------------------------------------------------------------------------- files, in a child process


@pytest.mark.parametrize("name", list(EXERCISES))
def test_a_second_correct_form_passes_from_its_file(name):
    report = check_file(name, SOLUTIONS / f"my_{name}.py")
    assert report.status == 0, report.error or report.text()


def _files(tmp_path, sources):
    paths = []
    for label, source in sources.items():
        path = tmp_path / f"{label}.py"
        path.write_text("import numpy as np\n\n" + source)
        paths.append(path)
    return paths


#: Wrong answers a learner writes, by exercise: {file name: (source, words the report must say)}.
WRONG = {
    "affine": {
        "hard_coded_shapes": ("def affine_backward(dout, x, W, b):\n"
                              "    return dout @ W.T, x.T @ dout, dout.reshape(4, -1).sum(0)\n",
                              "cannot reshape"),
        "in_place": ("def affine_backward(dout, x, W, b):\n    dout *= 1.5\n"
                     "    return dout @ W.T / 1.5, x.T @ dout / 1.5, dout.sum(0) / 1.5\n",
                     "dout was changed in place"),
    },
    "bernoulli": {
        "overflow": ("def bernoulli_nll_backward(dnll, logits, x):\n"
                     "    return dnll[:, None] * (np.exp(logits) / (1 + np.exp(logits)) - x)\n",
                     "dlogits has 3 NaN entries"),
        "complex": ("def bernoulli_nll_backward(dnll, logits, x):\n"
                    "    p = 1 / (1 + np.exp(-logits))\n    return dnll[:, None] * (p - x) + 0j\n",
                    "dlogits is complex (complex128)"),
    },
    "adam": {
        "ignores_hyper_parameters": ("def adam_step(theta, grad, m, v, t, lr, beta1, beta2, eps):\n"
                                     "    m = 0.9 * m + 0.1 * grad\n    v = 0.999 * v + 0.001 * grad ** 2\n"
                                     "    mh, vh = m / (1 - 0.9 ** t), v / (1 - 0.999 ** t)\n"
                                     "    return theta - lr * mh / (np.sqrt(vh) + 1e-8), m, v\n",
                                     "not 0.9, 0.999 and 1e-8"),
        "eps_inside_the_root": ("def adam_step(theta, grad, m, v, t, lr, beta1, beta2, eps):\n"
                                "    m = beta1 * m + (1 - beta1) * grad\n"
                                "    v = beta2 * v + (1 - beta2) * grad ** 2\n"
                                "    mh, vh = m / (1 - beta1 ** t), v / (1 - beta2 ** t)\n"
                                "    return theta - lr * mh / np.sqrt(vh + eps), m, v\n",
                                "eps belongs outside the square root"),
        "changes_the_gradient": ("def adam_step(theta, grad, m, v, t, lr, beta1, beta2, eps):\n"
                                 "    grad *= 1 - beta1\n    m = beta1 * m + grad\n"
                                 "    v = beta2 * v + (1 - beta2) * (grad / (1 - beta1)) ** 2\n"
                                 "    mh, vh = m / (1 - beta1 ** t), v / (1 - beta2 ** t)\n"
                                 "    return theta - lr * mh / (np.sqrt(vh) + eps), m, v\n",
                                 "grad was changed in place"),
    },
    "kl": {
        "imports_the_library": ("from minivae.kl import kl_backward as k, kl_forward\n\n"
                                "def kl_backward(dkl, mu, log_var):\n"
                                "    return k(dkl, kl_forward(mu, log_var)[1])\n",
                                "imports minivae (imports_the_library.py, line 3)"),
        "imports_the_catalogue": ("def kl_backward(dkl, mu, log_var):\n"
                                  "    from minivae.exercises.catalogue import EXERCISES\n"
                                  "    return EXERCISES['kl'].reference(dkl, mu, log_var)\n",
                                  "imports minivae"),
        "hard_coded_batch": ("def kl_backward(dkl, mu, log_var):\n"
                             "    return dkl.reshape(4, 1) * mu, 0.5 * dkl.reshape(4, 1) * np.expm1(log_var)\n",
                             "cannot reshape"),
    },
    "iwae": {
        "naive_log_mean_exp": ("def iwae_bound(log_w, dbound):\n    w = np.exp(log_w)\n"
                               "    return np.log(w.mean(0)), dbound * w / w.sum(0)\n", "inf entr"),
    },
}


#: A learner's whole answer to iwae_grad in plain NumPy, with three lines left to fill: the weights w (S, N) from the
#: log-weights a, and what log q(z|x) adds to dlog_var (the fixed-noise shortcut, ``da`` is -w / N).
BOUND_FILE = """
def mlp(h, weights):
    hs = [h]
    for W, b in weights[:-1]:
        hs.append(np.tanh(hs[-1] @ W + b))
    return hs[-1] @ weights[-1][0] + weights[-1][1], hs


def mlp_backward(dout, hs, weights):
    grads, da = [], dout
    for layer in reversed(range(len(weights))):
        grads.insert(0, (hs[layer].T @ da, da.sum(axis=0)))
        dh = da @ weights[layer][0].T
        da = dh * (1 - hs[layer] ** 2) if layer > 0 else dh
    return dh, grads


def neg_iwae_backward(x, noise, encoder, decoder, beta):
    S, N, K = noise.shape
    head, enc_hs = mlp(x, encoder)
    mu, log_var = head[:, :K], head[:, K:]
    z = mu + np.exp(log_var / 2) * noise
    logits, dec_hs = mlp(z.reshape(S * N, K), decoder)
    logits = logits.reshape(S, N, -1)
    a = -(np.logaddexp(0, logits) - x * logits).sum(-1) + beta * (
        -0.5 * (z ** 2).sum(-1) + 0.5 * (log_var + noise ** 2).sum(-1))
WEIGHTS
    da = -w / N
    dlogits = -da[..., None] * (1 / (1 + np.exp(-logits)) - x)
    dz, decoder_grads = mlp_backward(dlogits.reshape(S * N, -1), dec_hs, decoder)
    dz = dz.reshape(S, N, K) - beta * da[..., None] * z
    dmu = dz.sum(0)
    dlog_var = np.exp(log_var / 2) / 2 * (dz * noise).sum(0)
LOG_Q
    _, encoder_grads = mlp_backward(np.concatenate([dmu, dlog_var], axis=1), enc_hs, encoder)
    return encoder_grads, decoder_grads
"""
SOFTMAX = "    e = np.exp(a - a.max(0))\n    w = e / e.sum(0)"
SHORTCUT = "    dlog_var = dlog_var + beta / 2 * da.sum(0)[:, None]"
WRONG["iwae_grad"] = {
    "right": (BOUND_FILE.replace("WEIGHTS", SOFTMAX).replace("LOG_Q", SHORTCUT), "PASS"),
    "uniform_weights": (BOUND_FILE.replace("WEIGHTS", "    w = np.full(a.shape, 1 / S)").replace("LOG_Q", SHORTCUT),
                        "likely mistake: each sample weighted 1/S"),
    "weights_not_normalised": (BOUND_FILE.replace("WEIGHTS", "    w = np.exp(a - a.max(0))").replace("LOG_Q", SHORTCUT),
                               "likely mistake: the weights exp(log w_s - max log w) are not divided by their sum"),
    "naive_softmax": (BOUND_FILE.replace("WEIGHTS", "    w = np.exp(a) / np.exp(a).sum(0)").replace("LOG_Q", SHORTCUT),
                      "NaN entries"),
    "log_q_sign": (BOUND_FILE.replace("WEIGHTS", SOFTMAX).replace("LOG_Q", SHORTCUT.replace("+ beta", "- beta")),
                   "likely mistake: the decoder's gradients are right, so the weights w~ are: what reaches the "
                   "encoder's output is wrong"),
}

@pytest.mark.parametrize("name", list(WRONG))
def test_wrong_files_fail_and_say_why(tmp_path, name):
    paths = _files(tmp_path, {label: source for label, (source, _) in WRONG[name].items()})
    for path, report, (label, (_, words)) in zip(paths, check_files(get_exercise(name), paths),
                                                   WRONG[name].items()):
        said = report.error or report.text()
        if label == "right":  # the template the wrong ones are made from passes
            assert report.status == 0, said
            continue
        assert report.status != 0, label
        assert words in said, (label, said)
        if "hard_coded" in label:
            assert "a batch of one" in said, said  # the case it fails on is named


def test_patching_the_judge_from_the_learners_file_changes_nothing(tmp_path):
    # Each file sets what a judge in the same process would read, then answers wrongly; one process per file.
    for label, patch in (("numpy_max", "np.max = lambda *a, **k: 0.0\nnp.abs = lambda a: 0 * a\n"),
                         ("tolerance", "import sys\nfor m in list(sys.modules.values()):\n"
                                       "    if hasattr(m, 'FD_TOLERANCE'): m.FD_TOLERANCE = 1e9\n"
                                       "np.allclose = lambda *a, **k: True\n")):
        path = tmp_path / f"{label}.py"
        path.write_text("import numpy as np\n" + patch + "\ndef kl_backward(dkl, mu, log_var):\n"
                        "    return dkl[:, None] * mu, 0.5 * dkl[:, None] * (np.exp(0.5 * log_var) - 1)\n")
        report = check_file("kl", path)
        assert report.status == 1 and "sigma used for sigma^2" in report.text(), report.text()


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "minivae", "exercise", *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd)


def test_the_command_line_lists_shows_and_checks(tmp_path):
    listed = _cli("list")
    assert listed.returncode == 0 and all(name in listed.stdout for name in EXERCISES)
    shown = _cli("show", "kl")
    assert shown.returncode == 0 and "def kl_backward(dkl, mu, log_var)" in shown.stdout
    assert "Worked answer" not in shown.stdout

    mine = tmp_path / "my_kl.py"
    mine.write_text(shown.stdout.replace(
        '    raise NotImplementedError("derive dmu and dlog_var, then replace this line")',
        "    print('checking')\n    return dkl[:, None] * mu, 0.5 * dkl[:, None] * (np.exp(log_var) - 1.0)"))
    right = _cli("check", "kl", str(mine))
    assert right.returncode == 0, right.stdout + right.stderr
    assert "PASS" in right.stdout and "Worked answer" not in right.stdout and "my_kl.py printed:" in right.stdout

    mine.write_text(mine.read_text().replace("(np.exp(log_var) - 1.0)", "(np.exp(0.5 * log_var) - 1.0)"))
    answered = _cli("check", "kl", str(mine), "--answer")
    assert answered.returncode == 1 and "sigma used for sigma^2" in answered.stdout
    assert "Worked answer" in answered.stdout and "def kl_backward(dkl, cache: KLCache)" in answered.stdout


def test_the_capstone_reuses_earlier_answers_from_its_folder_run_from_elsewhere(tmp_path):
    done = _cli("check", "elbo", str(SOLUTIONS / "my_elbo.py"), cwd=tmp_path)
    assert done.returncode == 0 and "PASS" in done.stdout, done.stdout + done.stderr


#: Files that cannot be loaded or run, and the one line each ends in (exit 2).
BROKEN = {
    "syntax.py": ("def kl_backward(dkl, mu, log_var)\n    return dkl\n", "FILE: syntax.py, line 1: SyntaxError"),
    "exits.py": ("import sys\nsys.exit(0)\n", "FILE: exits.py called sys.exit(0) at import (exits.py, line 2)"),
    "exits_in_call.py": ("import sys\ndef kl_backward(dkl, mu, log_var):\n    sys.exit(0)\n",
                         "FILE: exits_in_call.py called sys.exit(0) on case 1"),
    "os_exit.py": ("import os\nos._exit(0)\n", "FILE: os_exit.py ended the process with status 0 (os._exit?) before"),
    "name_error.py": ("x = undefined\n", "FILE: name_error.py: NameError: name 'undefined' is not defined at import"),
    "missing_import.py": ("import my_absent_piece\n", "ModuleNotFoundError: No module named 'my_absent_piece'"),
    "raises.py": ("def kl_backward(dkl, mu, log_var):\n    return dkl @ mu @ log_var\n",
                  "FILE: raises.py: ValueError: matmul"),
    "no_function.py": ("x = 1\n", "FILE: expected no_function.py to define a function kl_backward(), found none"),
    "loops.py": ("def kl_backward(dkl, mu, log_var):\n    while True:\n        pass\n",
                 "FILE: loops.py did not finish within 1 s (an endless loop? --timeout sets the limit)"),
    "k.txt": ("def kl_backward(dkl, mu, log_var):\n    return mu, mu\n",
              "FILE: expected a Python file ending in .py, got k.txt"),
    "absent.py": (None, "found no file at"),
    "stub": (None, "kl_backward raises NotImplementedError"),
}


def _main(capsys, *args):
    """The command in this process (the learner's file still runs in a child): (status, stdout, stderr)."""
    status = main(["exercise", *args])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("name", list(BROKEN))
def test_a_file_that_cannot_run_ends_in_one_line_and_exit_2(tmp_path, capsys, name):
    source, words = BROKEN[name]
    path = str(get_exercise("kl").stub) if name == "stub" else str(tmp_path / name)
    if source is not None:
        Path(path).write_text(source)
    # The endless loop is stopped at 1 s; the others finish on their own (the default limit only guards the test).
    limit = ["--timeout", "1"] if name == "loops.py" else []
    status, out, err = _main(capsys, "check", "kl", path, *limit)
    assert status == 2, out + err
    assert out == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith("minivae exercise: error: ") and words in err, err
    assert "Traceback" not in err


def test_the_command_line_says_what_is_missing(capsys):
    status, _, err = _main(capsys, "check")
    assert status == 2 and "NAME: expected an exercise name" in err
    status, _, err = _main(capsys, "check", "kl")
    assert status == 2 and "FILE: expected the Python file defining kl_backward()" in err
    status, _, err = _main(capsys, "show", "nope")
    assert status == 2 and "exercise: expected one of" in err
