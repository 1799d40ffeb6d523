"""The documentation and the code point at each other: check that every pointer lands.

The code cites derivations by equation label (eq. ``kl-bwd`` in docstrings, # eq. gc-central in comments) and
pages by path (``docs/derivations/kl.md``); the docs label equations in MyST as ``$$ ... $$ (kl-bwd)``. These
tests check both directions, including the notebooks' and the exercises' citations; then build the site with
warnings as errors, check that every label can be seen and followed there (beside its equation, on the Equations
page, into the highlighted code), and open every built page in a headless Chromium at 1280 px with the network cut,
where MathJax (served from the site) must typeset every equation and nothing may be cut or fail to load.
"""

import fcntl
import importlib.util
import json
import os
import re
import select
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from notebook_run import NOTEBOOKS as NOTEBOOK_FILES, executed, session_folder

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


NOTEBOOKS = ROOT / "notebooks"
#: A citation in a notebook: eq. `label` in Markdown (one or two backquotes), eq. label in a code comment, or the
#: MyST role {eq}`label`.
NOTEBOOK_CITATION = re.compile(r"\beq\.\s+(?:`{1,2}(?P<quoted>[a-z0-9][a-z0-9-]*)`{1,2}|(?P<bare>[a-z0-9][a-z0-9-]*"
                               r"[a-z0-9]))|\{eq\}`(?P<role>[a-z0-9][a-z0-9-]*)`")
#: Words after "eq." that name the form of a citation in the notebooks' prose ("cited as eq. `label`").
NOT_LABELS = {"label"}


def notebook_citations(paths=None) -> dict:
    """Label -> the places ("notebooks/07_lecture_ideas.ipynb, cell 5") that cite it, in every numbered notebook."""
    cited = {}
    for path in paths if paths is not None else sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        if ".nbconvert." in path.name:
            continue
        for number, cell in enumerate(json.loads(path.read_text(encoding="utf-8"))["cells"], start=1):
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            for match in NOTEBOOK_CITATION.finditer(source):
                label = next(group for group in match.groups() if group)
                if label not in NOT_LABELS:
                    cited.setdefault(label, []).append(f"{path.relative_to(path.parents[1])}, cell {number}")
    return cited


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


def test_every_label_cited_in_a_notebook_or_an_exercise_is_an_equation_in_the_docs():
    # The exercises (minivae/exercises/, their stubs included) are code, read by code_files(); the notebooks are read
    # here, Markdown cells and code cells alike.
    assert any("/exercises/" in place for places in cited_labels().values() for place in places)
    cited = notebook_citations()
    assert len(cited) >= 5, f"too few citations found in the notebooks: has the pattern gone stale? {cited}"
    defined = doc_labels()
    missing = {label: places for label, places in cited.items() if label not in defined}
    assert not missing, f"cited in a notebook but labelled nowhere in docs/**/*.md: {missing}"


def test_a_notebook_citing_a_label_that_does_not_exist_is_caught(tmp_path):
    cells = [{"cell_type": "markdown", "source": ["The KL (eq. `kl-fwd`) and eq. `no-such-label`.\n"]},
             {"cell_type": "code", "source": "kl = kl_forward(mu, log_var)  # eq. no-such-bare\n"},
             {"cell_type": "markdown", "source": "See {eq}`no-such-role`; labels are cited as eq. `label`."}]
    (tmp_path / "notebooks").mkdir()
    notebook = tmp_path / "notebooks" / "01_fake.ipynb"
    notebook.write_text(json.dumps({"cells": cells}), encoding="utf-8")
    cited = notebook_citations([notebook])
    assert sorted(cited) == ["kl-fwd", "no-such-bare", "no-such-label", "no-such-role"]
    assert cited["no-such-bare"] == ["notebooks/01_fake.ipynb, cell 2"]
    assert sorted(set(cited) - set(doc_labels())) == ["no-such-bare", "no-such-label", "no-such-role"]


def test_no_operator_name_with_a_digit_in_the_maths():
    # MathJax typesets \operatorname{expm1} as "expm 1": a name with a digit is written \mathop{\mathrm{expm1}}.
    bad = re.compile(r"\\operatorname\*?\{[^}]*\d[^}]*\}")
    sources = doc_files() + sorted(NOTEBOOKS.glob("*.ipynb"))
    found = {str(p.relative_to(ROOT)): bad.findall(p.read_text(encoding="utf-8")) for p in sources}
    found = {path: names for path, names in found.items() if names}
    assert not found, f"operator names with a digit, which MathJax splits: {found}"


def test_directive_options_are_never_continued_on_a_second_line():
    # ":alt: ..." continued on an indented line makes the lines after it caption text (":width: 100%" shown as
    # words); a long option is written in the directive's YAML block (---, alt: >-, ---) instead.
    continued = re.compile(r"^:[\w-]+:.*\n[ \t]+\S", re.MULTILINE)
    found = {str(p.relative_to(ROOT)): continued.findall(p.read_text(encoding="utf-8")) for p in doc_files()}
    found = {path: hits for path, hits in found.items() if hits}
    assert not found, f"directive options continued on a second line: {found}"


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


def test_notebook_code_is_wrapped_to_90_columns():
    # 90 characters of code fit the column of a notebook's page at a 1280 px window (docs/_static/minivae.css).
    long = {}
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        if ".nbconvert." in path.name:
            continue
        for number, cell in enumerate(json.loads(path.read_text(encoding="utf-8"))["cells"], start=1):
            if cell["cell_type"] == "code":
                lines = "".join(cell["source"]).splitlines()
                long.update({f"{path.name}, cell {number}": line for line in lines if len(line) > 90})
    assert not long, f"notebook code lines over 90 characters: {long}"


def test_every_test_file_the_docs_name_exists():
    # docs/conf.py once named a tests/test_browser.py that never existed: every tests/... path in the docs' sources,
    # their configuration and extensions, and the README must be a file.
    sources = doc_files() + sorted(DOCS.glob("*.py")) + sorted((DOCS / "_ext").glob("*.py")) + [ROOT / "README.md"]
    named = {name: str(path.relative_to(ROOT)) for path in sources
             for name in re.findall(r"(?<![\w/])tests/[\w/]+\.py", path.read_text(encoding="utf-8"))}
    assert named, "no tests/ path found in the docs: has the pattern gone stale?"
    missing = {name: where for name, where in named.items() if not (ROOT / name).is_file()}
    assert not missing, f"test files named in the docs that do not exist: {missing}"


def _svg_texts(svg: str) -> list:
    """The text of an SVG drawn by matplotlib with svg.fonttype "none": one entry per line of text."""
    return [re.sub(r"<[^>]+>", "", text) for text in re.findall(r"<text\b.*?</text>", svg, re.DOTALL)]


def test_the_computation_graph_labels_equations_that_exist_and_is_up_to_date(tmp_path):
    # docs/images/make_graph.py draws the negative ELBO's computation graph, each edge labelled with an equation;
    # the committed SVG keeps its text, so the labels can be read back. Each must be an equation of the docs, the
    # SVG must be what the script draws now, and the derivation page must show it.
    pytest.importorskip("matplotlib")
    spec = importlib.util.spec_from_file_location("minivae_docs_make_graph", DOCS / "images" / "make_graph.py")
    make_graph = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_graph)
    committed = _svg_texts((DOCS / "images" / "elbo_graph.svg").read_text(encoding="utf-8"))
    labels = {label for text in committed for label in re.findall(r"\b[a-z0-9]+(?:-[a-z0-9]+)+\b", text)}
    edges = {label for _, _, text, _ in make_graph.FORWARD + make_graph.BACKWARD if text
             for label in re.findall(r"\b[a-z0-9]+(?:-[a-z0-9]+)+\b", text)}
    assert len(edges) >= 8 and edges <= labels, f"labels of edges missing from the SVG: {sorted(edges - labels)}"
    missing = sorted(labels - set(doc_labels()))
    assert not missing, f"the graph names equations labelled nowhere in docs/: {missing}"
    redrawn = _svg_texts(make_graph.draw(tmp_path / "graph.svg").read_text(encoding="utf-8"))
    assert redrawn == committed, "docs/images/elbo_graph.svg is stale: run python docs/images/make_graph.py"
    assert "../images/elbo_graph.svg" in (DOCS / "derivations" / "elbo.md").read_text(encoding="utf-8")


def _missing_doc_tools():
    return [name for name in ("sphinx", "myst_nb") if importlib.util.find_spec(name) is None]


@pytest.fixture(scope="session")
def built_site(tmp_path_factory):
    """The site built once per test session with warnings as errors, showing every notebook executed.

    Each notebook is executed once per session (``notebook_run.py``), here or by tests/test_notebooks.py in
    another worker, and the build shows those copies (``MINIVAE_DOCS_EXECUTED_NOTEBOOKS``, docs/conf.py). This
    fixture takes the notebooks from the last, test_notebooks.py from the first, so that two workers share them.
    """
    missing = _missing_doc_tools() + [name for name in ("nbclient", "ipykernel") if importlib.util.find_spec(name)
                                      is None]
    if missing:
        pytest.skip(f"the docs build needs {', '.join(missing)} (pip install -e '.[dev]'); not installed here")
    import nbformat

    out = tmp_path_factory.mktemp("docs")
    executed_copies = out / "notebooks"
    executed_copies.mkdir()
    for path in reversed(NOTEBOOK_FILES):
        nbformat.write(executed(path, session_folder(tmp_path_factory)), executed_copies / path.name)
    # The command documented in the README, into a temporary directory.
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
               "-d", str(out / "doctrees"), str(DOCS), str(out / "html")]
    env = dict(os.environ, MINIVAE_DOCS_EXECUTED_NOTEBOOKS=str(executed_copies))
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"sphinx failed (rc={result.returncode}):\n{result.stdout}\n{result.stderr}"
    return out / "html"


def test_docs_build_with_warnings_as_errors(built_site):
    assert (built_site / "index.html").is_file()
    # MathJax is part of the site, so the pages read offline
    assert (built_site / "_static" / "mathjax" / "tex-chtml.js").is_file()
    for page in built_site.rglob("*.html"):
        assert "cdn.jsdelivr" not in page.read_text(encoding="utf-8"), f"{page.name} loads a script from a CDN"


def _ids(page_html):
    return re.findall(r'\bid="([^"]+)"', page_html)


def test_every_label_is_seen_beside_its_equation_and_followed_to_the_code(built_site):
    # Each labelled equation shows its label under its number (its anchor: #equation-LABEL), linked to the label's
    # entry on the Equations page (its anchor: the label); the entry links the equation (its number) and every citing code line,
    # and the highlighted code has that line's anchor, where the citation links back to the equation.
    labels = set(doc_labels())
    equations = (built_site / "equations.html").read_text(encoding="utf-8")
    pages = {p.relative_to(built_site).as_posix(): p.read_text(encoding="utf-8") for p in built_site.rglob("*.html")
             if not {"_static", "_sources"} & set(p.relative_to(built_site).parts)}
    beside = {}
    for name, text in pages.items():
        for label in re.findall(r'<span class="eqno">\([0-9.]+\)<a class="headerlink" href="#equation-([\w-]+)"'
                                r'[^>]*>[^<]*</a><a class="eqlabel[^"]*" href="[./]*equations\.html#\1"', text):
            beside[label] = name
    assert set(beside) == labels, f"labels not shown beside their number: {sorted(labels - set(beside))}"
    for label, page in beside.items():
        entry = re.search(rf'<div class="equation-entry[^"]*" id="{label}">(.*?)</ul>', equations, re.DOTALL)
        assert entry, f"no entry for {label} on the Equations page"
        assert f'href="{page}#equation-{label}"' in entry.group(1), f"the entry of {label} does not link {page}"
        for place in cited_labels().get(label, []):
            path, line = place.rsplit(":", 1)
            code_page = "code/" + path[:-len(".py")] + ".html"
            assert f'href="{code_page}#L-{line}"' in entry.group(1), f"the entry of {label} does not link {place}"
            code = pages[code_page]
            assert f'id="L-{line}"' in code, f"{code_page} has no anchor for line {line}"
            assert re.search(rf'href="[./]*{page}#equation-{label}">{label}</a>', code), \
                f"the citation of {label} in {code_page} does not link its equation"
        for place in notebook_citations().get(label, []):
            notebook = place.split(",")[0][:-len(".ipynb")] + ".html"
            assert f'href="{notebook}"' in entry.group(1), f"the entry of {label} does not link {place}"


def test_the_search_finds_every_label(built_site):
    # Sphinx's search splits "kl-bwd" into "kl" and "bwd", both in the query and in the index, and stems each word:
    # a label is found when each of its words, stemmed, is indexed (in the text or the title) of the page that
    # derives it.
    from sphinx.search.en import SearchEnglish
    english = SearchEnglish({})
    index = (built_site / "searchindex.js").read_text(encoding="utf-8")
    data = json.loads(index[index.index("(") + 1:index.rindex(")")])
    docnames = data["docnames"]
    for label in doc_labels():
        page = next(p for p in built_site.rglob("*.html") if f'href="#equation-{label}"' in p.read_text(
            encoding="utf-8") and "equations.html" not in p.name)
        docname = page.relative_to(built_site).with_suffix("").as_posix()
        for word in label.split("-"):
            if word in english.stopwords:  # "from" in act-from-output: left out of the query as of the index
                continue
            found = []
            for kind in ("terms", "titleterms"):
                hits = data[kind].get(english.stem(word.lower()), [])
                found += hits if isinstance(hits, list) else [hits]
            assert docnames.index(docname) in found, f"the search does not find {word!r} of {label} on {docname}"


def test_html_ids_are_unique_on_every_page(built_site):
    # A label is an anchor beside the headings' anchors: they must not collide.
    for page in built_site.rglob("*.html"):
        duplicated = [i for i, n in Counter(_ids(page.read_text(encoding="utf-8"))).items() if n > 1]
        assert not duplicated, f"{page.relative_to(built_site)}: ids used twice: {duplicated}"


def test_figure_captions_are_the_captions_written(built_site):
    for page in built_site.rglob("*.html"):
        for caption in re.findall(r"<figcaption>(.*?)</figcaption>", page.read_text(encoding="utf-8"), re.DOTALL):
            assert not re.search(r":(?:alt|width|height|scale|align|name|class|figclass|target):", caption), \
                f"{page.name}: a directive's option leaked into a caption: {caption[:200]}"
    elbo = (built_site / "derivations" / "elbo.html").read_text(encoding="utf-8")
    caption = re.search(r"<figcaption>(.*?)</figcaption>", elbo, re.DOTALL).group(1)
    assert re.sub(r"<[^>]+>", "", caption).split("Fig. 1.1", 1)[-1].strip().startswith(
        "The reparameterized negative ELBO as a computation graph.")


def test_tables_are_tables_and_notebooks_are_titled_without_their_numbers(built_site):
    results = (built_site / "results.html").read_text(encoding="utf-8")
    assert results.count("<table") >= 3 and "|---:|" not in results
    sidebar = re.findall(r'<a class="reference internal" href="notebooks/[^"]+">([^<]+)</a>',
                         (built_site / "index.html").read_text(encoding="utf-8"))
    assert len(sidebar) >= 7 and not [title for title in sidebar if re.match(r"\d", title)], sidebar


def test_every_notebook_page_shows_its_executed_outputs(built_site):
    # The pages show what the notebooks draw (each draws at least one picture, tests/test_notebooks.py), whether
    # the build executed them or showed copies executed once for the whole test session.
    for path in NOTEBOOK_FILES:
        page = (built_site / "notebooks" / f"{path.stem}.html").read_text(encoding="utf-8")
        assert re.search(r'<img[^>]+src="[./]*_images/[^"]+\.png"', page), f"{path.stem}.html shows no picture"


def test_the_build_refuses_a_folder_of_executed_notebooks_that_lacks_one(tmp_path, monkeypatch):
    (tmp_path / NOTEBOOK_FILES[0].name).write_text("{}", encoding="utf-8")
    monkeypatch.setenv("MINIVAE_DOCS_EXECUTED_NOTEBOOKS", str(tmp_path))
    namespace = {"__file__": str(DOCS / "conf.py")}
    with pytest.raises(FileNotFoundError, match=rf"{re.escape(str(tmp_path))} lacks {NOTEBOOK_FILES[1].name}, "):
        exec(compile((DOCS / "conf.py").read_text(encoding="utf-8"), str(DOCS / "conf.py"), "exec"), namespace)


def test_a_stale_notebook_copy_is_removed_and_nbconvert_outputs_are_not_pages():
    # docs/conf.py copies ../notebooks into docs/notebooks: a copy whose notebook is gone, and the file that
    # `jupyter nbconvert --execute` writes beside a notebook, would each become a page outside every toctree.
    copies = DOCS / "notebooks"
    copies.mkdir(exist_ok=True)
    stale = copies / "99_gone.ipynb"
    stale.write_text("{}", encoding="utf-8")
    output = ROOT / "notebooks" / "98_scratch.nbconvert.ipynb"
    output.write_text("{}", encoding="utf-8")
    try:
        namespace = {"__file__": str(DOCS / "conf.py")}
        exec(compile((DOCS / "conf.py").read_text(encoding="utf-8"), str(DOCS / "conf.py"), "exec"), namespace)
        assert not stale.exists(), "docs/conf.py left a copy of a notebook that no longer exists"
        assert not (copies / output.name).exists(), "docs/conf.py copied an nbconvert output as a page"
        assert sorted(p.name for p in copies.glob("*.ipynb")) == sorted(
            p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb") if ".nbconvert." not in p.name)
    finally:
        stale.unlink(missing_ok=True)
        output.unlink(missing_ok=True)


# ----------------------------------------------------------------- the built site in a real browser
#: Seconds for the browser to load a page and MathJax to typeset it (about 2 s here).
BROWSER_TIMEOUT = 60
#: The window the pages are checked in: a laptop's, at which no equation may be cut and no page scroll sideways.
WINDOW = {"width": 1280, "height": 800}


def _browser():
    """The path of a Chromium, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _above_nine(fd):
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return moved


class DevTools:
    """Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe): no driver, no sockets.

    Messages are JSON, each ended by a NUL byte; the browser reads them on its file descriptor 3 and writes on 4.
    Every request the page makes is reported as a Network.requestWillBeSent event, kept in ``events``.
    """

    def __init__(self, executable, profile):
        browser_in, self._to_browser = os.pipe()
        self._from_browser, browser_out = os.pipe()
        # the browser's ends move above 9 first, so that placing them on 3 and 4 cannot overwrite one another
        browser_in, browser_out = (_above_nine(fd) for fd in (browser_in, browser_out))

        def on_3_and_4():  # runs in the child before exec; dup2 leaves the copies inheritable
            os.dup2(browser_in, 3)
            os.dup2(browser_out, 4)
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--remote-debugging-pipe", f"--user-data-dir={profile}",
                 # no request leaves the machine: every proxied request goes to a closed local port
                 "--proxy-server=127.0.0.1:9", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync",
                 # tabs load side by side: one in the background keeps its timers (MathJax's) at full speed
                 "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                 "--disable-backgrounding-occluded-windows", "about:blank"]
        # close_fds=False: Python's own descriptors are not inheritable anyway, and closing would take 3 and 4
        self.process = subprocess.Popen([executable, *flags], preexec_fn=on_3_and_4, close_fds=False,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        os.close(browser_in)
        os.close(browser_out)
        self._buffer = b""
        self._last_id = 0
        self.events = []
        self.session = None  # the tab's session, once one is attached

    def call(self, method, params=None, session=None):
        self._last_id += 1
        message = {"id": self._last_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            answer = self._read()
            if answer.get("id") == self._last_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer["result"]
            self.events.append(answer)

    def wait_for(self, event):
        while not any(e.get("method") == event for e in self.events):
            self.events.append(self._read())

    def wait_for_any(self, event, sessions):
        """Wait until one of the sessions reports event; return that session."""
        while True:
            for e in self.events:
                if e.get("method") == event and e.get("sessionId") in sessions:
                    return e["sessionId"]
            self.events.append(self._read())

    def _read(self):
        deadline = time.monotonic() + BROWSER_TIMEOUT
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_browser], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError(f"the browser did not answer within {BROWSER_TIMEOUT} s")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError(f"the browser closed its pipe (exit code {self.process.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self):
        try:
            self.call("Browser.close")
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


#: Run in each page after it loaded: wait for MathJax and the images, then list what a reader would see broken.
INSPECT = r"""
(async () => {
    const found = {mathjax: typeof MathJax !== 'undefined' && !!MathJax.startup};
    if (found.mathjax) await MathJax.startup.promise;
    await Promise.all([...document.images].map(image => image.complete ? null :
        new Promise(done => { image.addEventListener('load', done); image.addEventListener('error', done); })));
    const code = 'pre, code, kbd, samp, script, style, textarea, .highlight, mjx-container';
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    found.raw = [];
    while (walker.nextNode()) {
        const text = walker.currentNode.textContent, parent = walker.currentNode.parentElement;
        if (!parent || parent.closest(code) || !parent.checkVisibility()) continue;
        for (const delimiter of ['\\(', '\\[', '$$']) {
            const at = text.indexOf(delimiter);
            if (at >= 0) found.raw.push(text.slice(Math.max(0, at - 20), at + 40).trim());
        }
    }
    found.typeset = document.querySelectorAll('mjx-container').length;
    found.errors = [...document.querySelectorAll('mjx-merror, [data-mjx-error]')].map(e => e.textContent.slice(0, 80));
    found.broken_images = [...document.images].filter(image => !(image.complete && image.naturalWidth > 0))
        .map(image => image.getAttribute('src'));
    const scrolls = element => ['auto', 'scroll'].includes(getComputedStyle(element).overflowX);
    found.cut = [];
    for (const box of document.querySelectorAll('div.math, mjx-container[display="true"]')) {
        const column = box.parentElement.getBoundingClientRect();
        const right = box.getBoundingClientRect().right;
        if ((box.scrollWidth > box.clientWidth + 1 && !scrolls(box)) || right > column.right + 1)
            found.cut.push(`${box.tagName.toLowerCase()} ${box.scrollWidth} px in ${box.clientWidth} px: ` +
                           box.textContent.slice(0, 60));
    }
    found.code_cut = [...document.querySelectorAll('div.cell_input pre')].filter(pre =>
        pre.scrollWidth > pre.clientWidth + 1).map(pre => pre.textContent.split('\n').find(line =>
        line.length > 90) || pre.textContent.slice(0, 60));
    found.page_width = document.documentElement.scrollWidth;
    found.window_width = window.innerWidth;
    return JSON.stringify(found);
})()
"""


def site_pages(site):
    """Every page of the built site, as paths relative to it."""
    return sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html")
                  if not {"_static", "_sources", "_images"} & set(p.relative_to(site).parts))


#: Tabs the browser loads pages in side by side (CI has two cores).
TABS = 2


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    """One headless Chromium for the session, with TABS tabs at 1280 px wide, the network cut."""
    executable = _browser()
    if executable is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but no Chromium found: .ci/run installs Debian's chromium when it is missing")
        pytest.skip("no Chromium found (Debian: apt-get install chromium); CI installs it and runs this test")
    devtools = DevTools(executable, tmp_path_factory.mktemp("profile"))
    try:
        devtools.sessions = []
        for _ in range(TABS):
            target = devtools.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = devtools.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            devtools.call("Emulation.setDeviceMetricsOverride", {**WINDOW, "deviceScaleFactor": 1, "mobile": False},
                          session=session)
            devtools.call("Emulation.setFocusEmulationEnabled", {"enabled": True}, session=session)
            devtools.call("Network.enable", session=session)
            devtools.call("Page.enable", session=session)
            devtools.sessions.append(session)
        devtools.session = devtools.sessions[0]
        yield devtools
    finally:
        devtools.close()


def inspect_pages(browser, paths):
    """Page -> what a reader sees wrong on it (a list of problems, empty when none), the tabs loading side by side."""
    queue, loading, problems = list(paths), {}, {}

    def navigate(session):
        path = queue.pop(0)
        browser.events = [e for e in browser.events if e.get("sessionId") != session]
        browser.call("Page.navigate", {"url": path.as_uri()}, session=session)
        loading[session] = path
    for session in browser.sessions[:len(queue)]:
        navigate(session)
    while loading:
        session = browser.wait_for_any("Page.loadEventFired", set(loading))
        path = loading.pop(session)
        problems[path] = _inspect_loaded(browser, path, session)
        if queue:
            navigate(session)
    return problems


def inspect_page(browser, path):
    """What a reader sees wrong on the page at path: a list of problems, empty when there are none."""
    return inspect_pages(browser, [path])[path]


def _inspect_loaded(browser, path, session):
    result = browser.call("Runtime.evaluate", {"expression": INSPECT, "awaitPromise": True, "returnByValue": True},
                          session=session)
    if "exceptionDetails" in result:
        return [f"the inspection failed: {result['exceptionDetails']}"]
    found = json.loads(result["result"]["value"])
    events = [e for e in browser.events if e.get("sessionId") == session]
    requests = [e["params"]["request"]["url"] for e in events if e.get("method") == "Network.requestWillBeSent"]
    failed = [e["params"].get("errorText") for e in events if e.get("method") == "Network.loadingFailed"]
    problems = []
    outside = [url for url in requests if not url.startswith(("file:", "data:", "about:", "blob:"))]
    if outside:
        problems.append(f"requests leaving the machine: {outside}")
    if failed:
        problems.append(f"requests that failed: {failed}")
    if path.read_text(encoding="utf-8").count('class="math') and not found["mathjax"]:
        problems.append("has equations but MathJax did not load")
    if found["mathjax"] and not any("/_static/mathjax/" in url for url in requests):
        problems.append("MathJax not read from the site's _static")
    if found["raw"]:
        problems.append(f"raw TeX left in the text: {found['raw'][:5]}")
    if found["errors"]:
        problems.append(f"MathJax errors: {found['errors']}")
    if found["broken_images"]:
        problems.append(f"images not loaded: {found['broken_images']}")
    if found["cut"]:
        problems.append(f"display equations cut (wider than their box, which does not scroll): {found['cut']}")
    if found["code_cut"]:
        problems.append(f"notebook code wider than the column: {found['code_cut']}")
    if found["page_width"] > found["window_width"]:
        problems.append(f"the page scrolls sideways: {found['page_width']} px in a {found['window_width']} px window")
    return problems


def test_every_page_reads_offline_in_a_headless_browser(built_site, browser):
    # Every page as a reader sees it at 1280 px without a network: MathJax from the site typesets every equation,
    # every image loads, no display equation is cut and no page scrolls sideways, no request leaves the machine.
    pages = site_pages(built_site)
    assert len(pages) >= 40 and "derivations/kl.html" in pages and "notebooks/01_elbo_to_code.html" in pages
    problems = {path.relative_to(built_site).as_posix(): found
                for path, found in inspect_pages(browser, [built_site / page for page in pages]).items() if found}
    assert not problems, "\n".join(f"{page}: {found}" for page, found in problems.items())


#: Run on the search page: wait for Sphinx's search to finish, then list the pages it found.
SEARCH_RESULTS = """
new Promise(resolve => {
    const start = Date.now();
    const poll = () => {
        const summary = document.querySelector('#search-results .search-summary');
        if ((summary && summary.textContent.trim()) || Date.now() - start > 20000)
            resolve(JSON.stringify([...document.querySelectorAll('#search-results a')].map(a => a.getAttribute('href'))));
        else setTimeout(poll, 100);
    };
    poll();
})
"""


def test_the_site_search_finds_equations_by_label(built_site, browser):
    # The search box, as a reader uses it: a label finds the page that derives it and the Equations page.
    pages = {label: path.relative_to(DOCS).with_suffix(".html").as_posix() for path in doc_files()
             for label in DOLLAR_LABEL.findall(path.read_text(encoding="utf-8"))}
    for label in ("kl-bwd", "gauss-grad", "elbo-bwd", "log-normal", "lr-warmup", "gc-relerr"):
        browser.events.clear()
        browser.call("Page.navigate", {"url": (built_site / "search.html").as_uri() + f"?q={label}"},
                     session=browser.session)
        browser.wait_for("Page.loadEventFired")
        found = json.loads(browser.call("Runtime.evaluate", {"expression": SEARCH_RESULTS, "awaitPromise": True,
                                                             "returnByValue": True}, session=browser.session)
                           ["result"]["value"])
        assert pages[label] in found and "equations.html" in found, f"searching {label!r} found {found}"


@pytest.fixture
def broken_copy(built_site):
    """Write a broken copy of a built page beside it (so its links and scripts resolve); removed afterwards."""
    made = []

    def write(page, edit):
        original = (built_site / page).read_text(encoding="utf-8")
        edited = edit(original)
        assert edited != original, "the edit changed nothing: the built page no longer looks as the test expects"
        copy = (built_site / page).with_name("broken-copy-" + (built_site / page).name)
        copy.write_text(edited, encoding="utf-8")
        made.append(copy)
        return copy
    yield write
    for copy in made:
        copy.unlink(missing_ok=True)


def test_the_browser_check_fails_when_mathjax_typesets_only_part_of_a_page(browser, broken_copy):
    # Every other inline equation is hidden from MathJax, as if it had stopped part way: their \(...\) stay raw.
    count = iter(range(10 ** 6))
    copy = broken_copy("derivations/kl.html", lambda text: re.sub(
        r'<span class="math notranslate nohighlight">(.*?)</span>',
        lambda m: m.group(0) if next(count) % 2 else
        f'<span class="tex2jax_ignore"><span class="notranslate nohighlight">{m.group(1)}</span></span>', text))
    problems = inspect_page(browser, copy)
    assert any(problem.startswith("raw TeX left in the text") for problem in problems), problems


def test_the_browser_check_fails_on_a_broken_image(browser, broken_copy):
    copy = broken_copy("derivations/elbo.html", lambda text: text.replace("elbo_graph.svg", "no_such_graph.svg"))
    problems = inspect_page(browser, copy)
    assert any(problem.startswith("images not loaded") and "no_such_graph.svg" in problem for problem in problems), \
        problems


def test_the_browser_check_fails_on_an_equation_wider_than_its_box(browser, broken_copy):
    # An equation of 300 terms, with the site's own rule (display equations scroll in their box) taken away.
    wide = " + ".join(f"x_{{{i}}}" for i in range(300))
    unscrolled = "<style>div.math, mjx-container { overflow: visible !important; }</style>"
    copy = broken_copy("derivations/kl.html", lambda text: text.replace("</head>", unscrolled + "</head>", 1).replace(
        '<div class="math notranslate nohighlight">', f'<div class="math notranslate nohighlight">\\[{wide}\\]</div>'
        '<div class="math notranslate nohighlight">', 1))
    problems = inspect_page(browser, copy)
    assert any(problem.startswith("display equations cut") for problem in problems), problems
    assert not any(problem.startswith("raw TeX") for problem in problems), problems  # the equation was typeset


def test_the_built_html_loads_nothing_from_the_network(built_site):
    # Links to papers are fine; nothing the browser fetches by itself (scripts, styles, images, fonts, frames).
    fetched = re.compile(r"<(?:script|img|iframe|source|audio|video|embed)\b[^>]*\bsrc=[\"']?(?:https?:)?//"
                         r"|<link\b[^>]*\bhref=[\"']?(?:https?:)?//|@import\s+[\"']?(?:url\()?[\"']?(?:https?:)?//"
                         r"|url\(\s*[\"']?(?:https?:)?//", re.IGNORECASE)
    files = [p for p in built_site.rglob("*") if p.suffix in {".html", ".css", ".js"} and "mathjax" not in p.parts]
    assert len(files) >= 40
    loading = {p.relative_to(built_site).as_posix(): m.group(0) for p in files
               if (m := fetched.search(p.read_text(encoding="utf-8", errors="replace")))}
    assert not loading, f"files that make the browser fetch from the network: {loading}"


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
