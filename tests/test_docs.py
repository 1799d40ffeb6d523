"""The documentation and the code point at each other: check that every pointer lands.

The code cites derivations by equation label (eq. ``kl-bwd`` in docstrings, # eq. gc-central in comments) and
pages by path (``docs/derivations/kl.md``); the docs label equations in MyST as ``$$ ... $$ (kl-bwd)``. These
tests check both directions, then build the site with warnings as errors and open two of its pages in a headless
Chromium with the network cut, where MathJax (served from the site) must typeset every equation.
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
    """The site built once per test session with warnings as errors; the build executes every notebook."""
    missing = _missing_doc_tools()
    if missing:
        pytest.skip(f"the docs build needs {', '.join(missing)} (pip install -e '.[dev]'); not installed here")
    out = tmp_path_factory.mktemp("docs")
    # The same command as documented in docs/conf.py, into a temporary directory.
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
               "-d", str(out / "doctrees"), str(DOCS), str(out / "html")]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"sphinx failed (rc={result.returncode}):\n{result.stdout}\n{result.stderr}"
    return out / "html"


def test_docs_build_with_warnings_as_errors(built_site):
    assert (built_site / "index.html").is_file()
    # MathJax is part of the site, so the pages read offline
    assert (built_site / "_static" / "mathjax" / "tex-chtml.js").is_file()
    for page in built_site.rglob("*.html"):
        assert "cdn.jsdelivr" not in page.read_text(encoding="utf-8"), f"{page.name} loads a script from a CDN"


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
#: Pages opened in the browser: a derivation and a notebook, each with display and inline equations.
BROWSER_PAGES = ("derivations/kl.html", "notebooks/01_elbo_to_code.html")
#: Seconds for the browser to load a page and MathJax to typeset it (about 2 s here).
BROWSER_TIMEOUT = 60


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
                 "--disable-sync", "about:blank"]
        # close_fds=False: Python's own descriptors are not inheritable anyway, and closing would take 3 and 4
        self.process = subprocess.Popen([executable, *flags], preexec_fn=on_3_and_4, close_fds=False,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        os.close(browser_in)
        os.close(browser_out)
        self._buffer = b""
        self._last_id = 0
        self.events = []

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


#: Run in the page after it loaded: wait for MathJax's typesetting, then count what it made.
TYPESET = """
(typeof MathJax === 'undefined' || !MathJax.startup) ? JSON.stringify({mathjax: false}) :
MathJax.startup.promise.then(() => JSON.stringify({
    mathjax: true,
    typeset: document.querySelectorAll('mjx-container').length,
    display: document.querySelectorAll('mjx-container[display="true"]').length,
    errors: document.querySelectorAll('mjx-merror').length,
    raw: document.body.innerText.includes('$$'),
}))
"""


def test_equations_typeset_offline_in_a_headless_browser(built_site, tmp_path):
    # A reader without a network sees typeset equations on a derivation page and a notebook page: MathJax comes
    # from the site itself, every request stays on this machine, and no raw $$ is left on the page.
    executable = _browser()
    if executable is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but no Chromium found: .ci/run installs Debian's chromium when it is missing")
        pytest.skip("no Chromium found (Debian: apt-get install chromium); CI installs it and runs this test")
    browser = DevTools(executable, tmp_path / "profile")
    try:
        for page in BROWSER_PAGES:
            browser.events.clear()
            target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            browser.call("Network.enable", session=session)
            browser.call("Page.enable", session=session)
            browser.call("Page.navigate", {"url": (built_site / page).as_uri()}, session=session)
            browser.wait_for("Page.loadEventFired")
            result = browser.call("Runtime.evaluate", {"expression": TYPESET, "awaitPromise": True,
                                                       "returnByValue": True}, session=session)
            found = json.loads(result["result"]["value"])
            requests = [e["params"]["request"]["url"] for e in browser.events
                        if e.get("method") == "Network.requestWillBeSent"]
            failed = [e["params"] for e in browser.events if e.get("method") == "Network.loadingFailed"]
            browser.call("Target.closeTarget", {"targetId": target})

            outside = [url for url in requests if not url.startswith(("file:", "data:", "about:"))]
            assert not outside, f"{page}: requests leaving the machine: {outside}"
            assert found["mathjax"], f"{page}: MathJax did not load; requests made: {requests}"
            assert any("/_static/mathjax/" in url for url in requests), f"{page}: MathJax not read from _static"
            assert not failed, f"{page}: requests that failed: {failed}"
            assert found["typeset"] >= 10 and found["display"] >= 2, f"{page}: too few typeset equations: {found}"
            assert found["errors"] == 0, f"{page}: MathJax could not typeset {found['errors']} equations"
            assert not found["raw"], f"{page}: raw $$ left on the page"
    finally:
        browser.close()


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
