"""The documentation and the code point at each other: check that every pointer lands.

The code cites derivations by equation label (eq. ``kl-bwd`` in docstrings, # eq. gc-central in comments) and
pages by path (``docs/derivations/kl.md``); the docs label equations in MyST as ``$$ ... $$ (kl-bwd)``. These
tests check both directions, then build the site with warnings as errors.
"""

import importlib.util
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CODE = ROOT / "minivae"
DOCS = ROOT / "docs"

#: A citation in the code: "eq." then the label, either in double backquotes (docstrings) or bare (comments).
CITATION = re.compile(r"\beq\.\s+(?:``(?P<quoted>[a-z0-9][a-z0-9-]*)``|(?P<bare>[a-z0-9][a-z0-9-]*[a-z0-9]))")
#: A labelled equation in the docs: a line ending the math with "$$ (label)", or ":label: name" in a {math} block.
DOLLAR_LABEL = re.compile(r"\$\$[ \t]*\((?P<label>[\w-]+)\)[ \t]*$", re.MULTILINE)
DIRECTIVE_LABEL = re.compile(r"^:label:[ \t]*(?P<label>[\w-]+)[ \t]*$", re.MULTILINE)
#: A page of the docs named in the code, e.g. docs/derivations/kl.md (a trailing full stop is not part of it).
PAGE = re.compile(r"(?<![\w/.])docs/[\w./-]*[\w/]")

#: Equations labelled in the docs on purpose although no code line computes them, so the code never cites them.
#: Each is referenced within the docs. Keep this small: a label here must not also be cited by the code.
STANDALONE = {
    # log p(x) = L^v + KL(q || p(z|x)): the lecture's first route to the bound and the reason it is a bound. The
    # code never computes the true posterior; iwae.md refers back to it for the gap the importance weights close.
    "elbo-decomp",
    # L^v = -KL(q || p(z)) + E_q[log p(x|z)]: the lecture's second route. The code computes its two terms
    # separately and cites their own labels (kl-fwd, bern-nll, gauss-nll) and the assembled loss (neg-elbo).
    "elbo-reg-rec",
}


def code_files():
    return sorted(CODE.rglob("*.py"))


def doc_files():
    return sorted(path for path in DOCS.rglob("*.md") if "_build" not in path.relative_to(DOCS).parts)


def cited_labels() -> dict:
    """Label -> the places ("minivae/kl.py:24") that cite it."""
    cited = {}
    for path in code_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            for match in CITATION.finditer(line):
                label = match.group("quoted") or match.group("bare")
                cited.setdefault(label, []).append(f"{path.relative_to(ROOT)}:{number}")
    return cited


def doc_labels() -> Counter:
    """Label -> how many times the docs define it."""
    labels = Counter()
    for path in doc_files():
        text = path.read_text(encoding="utf-8")
        labels.update(m.group("label") for m in DOLLAR_LABEL.finditer(text))
        labels.update(m.group("label") for m in DIRECTIVE_LABEL.finditer(text))
    return labels


def test_the_patterns_find_what_they_should():
    # The forms used in the code today; a new form of citation must be added here and to CITATION.
    found = [m.group("quoted") or m.group("bare") for m in CITATION.finditer(
        "Affine (eq. ``affine-fwd``). x = y  # eq. gc-central\n(eq. bern-grad) see eq.  ``kl-fwd``")]
    assert found == ["affine-fwd", "gc-central", "bern-grad", "kl-fwd"]
    assert [m.group("label") for m in DOLLAR_LABEL.finditer("$$\ny = x\n$$ (relu)\n$$ a $$ (b-c)\n")] == ["relu", "b-c"]
    assert PAGE.findall("Derivation: ``docs/derivations/kl.md``. See docs/derivations. https://x.org/docs/a") == [
        "docs/derivations/kl.md", "docs/derivations"]


def test_the_code_cites_labels_and_the_docs_define_them():
    # Guards against a pattern that silently matches nothing, which would make the tests below pass vacuously.
    assert len(cited_labels()) >= 20
    assert len(doc_labels()) >= 20


def test_every_label_cited_in_the_code_is_an_equation_in_the_docs():
    defined = doc_labels()
    missing = {label: places for label, places in cited_labels().items() if label not in defined}
    assert not missing, f"cited in the code but labelled nowhere in docs/**/*.md: {missing}"


def test_every_equation_label_in_the_docs_is_cited_in_the_code_or_declared_standalone():
    uncited = set(doc_labels()) - set(cited_labels()) - STANDALONE
    assert not uncited, (f"labelled in the docs but cited by no code: {sorted(uncited)}; cite it from the code line "
                         "that computes it, or add it to STANDALONE with the reason")


def test_standalone_labels_exist_and_are_really_standalone():
    assert STANDALONE <= set(doc_labels()), f"not labelled in the docs: {sorted(STANDALONE - set(doc_labels()))}"
    cited = STANDALONE & set(cited_labels())
    assert not cited, f"cited by the code, so no longer standalone (remove from STANDALONE): {sorted(cited)}"


def test_equation_labels_are_unique_across_the_site():
    duplicates = sorted(label for label, count in doc_labels().items() if count > 1)
    assert not duplicates, f"labelled more than once in docs/: {duplicates}"


def test_every_docs_page_the_code_names_exists():
    named = {}
    for path in code_files():
        for page in PAGE.findall(path.read_text(encoding="utf-8")):
            named.setdefault(page, set()).add(str(path.relative_to(ROOT)))
    assert named, "no docs/ path found in the code: has the pattern gone stale?"
    missing = {page: sorted(files) for page, files in named.items() if not (ROOT / page).exists()}
    assert not missing, f"named in the code but not in the repository: {missing}"


def _missing_doc_tools():
    return [name for name in ("sphinx", "myst_nb") if importlib.util.find_spec(name) is None]


@pytest.mark.skipif(bool(_missing_doc_tools()),
                    reason="the docs build needs sphinx and myst-nb (pip install -e '.[dev]'); not installed here")
def test_docs_build_with_warnings_as_errors(tmp_path):
    # The same command as documented in docs/conf.py, into a temporary directory. Takes a few seconds.
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
               "-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"sphinx failed (rc={result.returncode}):\n{result.stdout}\n{result.stderr}"
    assert (tmp_path / "html" / "index.html").is_file()


def test_the_performance_page_documents_every_benchmark_and_its_goals():
    # Each script in benchmarks/ has its section on the page: how to run it, what it times, the goals and what was
    # measured (or that nothing was yet).
    page = (DOCS / "performance.md").read_text()
    scripts = sorted(p.name for p in (ROOT / "benchmarks").glob("bench_*.py"))
    assert scripts == ["bench_cpu.py", "bench_gpu.py"], scripts
    for script in scripts:
        assert f"python benchmarks/{script}" in page, f"the performance page does not say how to run {script}"
    for heading in ("## Measured", "## What bounds the step now", "## The goals, against what NumPy allows", "## GPU",
                    "### Measured on a GPU"):
        assert f"\n{heading}\n" in page, f"the performance page lost its section {heading!r}"
    assert "Where the step's time goes" in page  # the breakdown table, as printed
