"""Equation labels a reader can see and follow, and the code pages they lead to.

The code cites its derivations by label (eq. ``kl-bwd`` in docstrings, # eq. kl-bwd in comments, eq. `kl-bwd` in
notebooks). This extension makes those labels part of the site:

- every numbered equation shows its label under its number, linked to the label's entry on the *Equations* page;
  its anchor is Sphinx's ``#equation-<label>`` (the label alone could collide with a heading's anchor: ``adam``),
  and the label's text goes into the search index;
- ``{equation-index}`` (on ``equations.md``) becomes one entry per label, anchored by the label itself
  (``equations.html#kl-bwd``): its number and page (linked), the
  equation typeset, and every code line, notebook and exercise that cites it;
- every module of ``minivae/`` that cites an equation gets a highlighted page, ``code/minivae/<module>.html``,
  with an anchor per line (``#L-24``), the citations in it linked to their equations.
"""

import ast
import html
import json
import posixpath
import re
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer
from sphinx.locale import _
from sphinx.util.math import get_node_equation_number

ROOT = Path(__file__).resolve().parents[2]
CODE = ROOT / "minivae"
NOTEBOOKS = ROOT / "notebooks"
#: The docname of the page that lists every label.
INDEX_DOC = "equations"
#: The folder (under the site's root) of the highlighted code pages.
CODE_PAGES = "code"

#: A citation in the code: "eq." then the label in double backquotes (docstrings) or bare (comments). The same
#: pattern as tests/test_docs.py.
CODE_CITATION = re.compile(r"\beq\.\s+(?:``(?P<quoted>[a-z0-9][a-z0-9-]*)``|(?P<bare>[a-z0-9][a-z0-9-]*[a-z0-9]))")
#: A citation in a notebook: eq. `label` in Markdown, eq. label in a code comment, or the role {eq}`label`.
NOTEBOOK_CITATION = re.compile(r"\beq\.\s+(?:`{1,2}(?P<quoted>[a-z0-9][a-z0-9-]*)`{1,2}|(?P<bare>[a-z0-9][a-z0-9-]*"
                               r"[a-z0-9]))|\{eq\}`(?P<role>[a-z0-9][a-z0-9-]*)`")
#: Words after "eq." in the notebooks' prose that name the form of a citation, not an equation.
NOT_LABELS = {"label"}


def _label(match):
    return next(group for group in match.groups() if group)


# ----------------------------------------------------------------- who cites what
def code_files():
    return sorted(CODE.rglob("*.py"))


def _functions_by_line(source):
    """Line number -> the qualified name of the innermost function or class around it ("" at module level)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    names = {}

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                for line in range(child.lineno, (child.end_lineno or child.lineno) + 1):
                    names[line] = name
                visit(child, name + ".")
            else:
                visit(child, prefix)
    visit(tree, "")
    return names


def code_citations():
    """(label, path relative to the root, line number, enclosing function or class) for every citation in minivae/."""
    found = []
    for path in code_files():
        source = path.read_text(encoding="utf-8")
        names = _functions_by_line(source)
        for number, line in enumerate(source.splitlines(), start=1):
            for match in CODE_CITATION.finditer(line):
                found.append((_label(match), path.relative_to(ROOT).as_posix(), number, names.get(number, "")))
    return found


def notebook_citations():
    """(label, notebook's file name, cell number from 1) for every citation in notebooks/*.ipynb."""
    found = []
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        if ".nbconvert." in path.name:
            continue
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        for number, cell in enumerate(cells, start=1):
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            for match in NOTEBOOK_CITATION.finditer(source):
                label = _label(match)
                if label not in NOT_LABELS:
                    found.append((label, path.name, number))
    return found


# ----------------------------------------------------------------- labels beside their numbers
class equation_label_text(nodes.Inline, nodes.TextElement):
    """The label of the equation before it, as text: read by the search index, drawn by the equation itself."""


def _skip(self, node):
    raise nodes.SkipNode


def _collect_equations(app, doctree):
    """Record each labelled equation (page, LaTeX, anchor) and put its label's text into the page for the search."""
    env = app.env
    found = env.minivae_equations if hasattr(env, "minivae_equations") else {}
    env.minivae_equations = found
    for node in list(doctree.findall(nodes.math_block)):
        label = node.get("label")
        if not label or not node.get("ids"):
            continue
        found[label] = {"docname": env.docname, "latex": node.astext(), "id": node["ids"][0]}
        node.parent.insert(node.parent.index(node) + 1, equation_label_text(label, label))


def _purge(app, env, docname):
    for label in [label for label, eq in getattr(env, "minivae_equations", {}).items() if eq["docname"] == docname]:
        del env.minivae_equations[label]


def _merge(app, env, docnames, other):
    env.minivae_equations = getattr(env, "minivae_equations", {})
    env.minivae_equations.update({label: eq for label, eq in getattr(other, "minivae_equations", {}).items()
                                  if eq["docname"] in docnames})


def _relative(from_page, to_page):
    """The URL of the page to_page ("code/minivae/kl") seen from from_page, both without ".html"."""
    return posixpath.relpath(to_page, posixpath.dirname(from_page) or ".") + ".html"


def visit_displaymath(self, node):
    """Sphinx's MathJax display equation, with the equation's label under its number, linked to its entry."""
    self.body.append(self.starttag(node, "div", CLASS="math notranslate nohighlight"))
    if node.get("no-wrap", node.get("nowrap", False)):
        self.body.append(self.encode(node.astext()))
        self.body.append("</div>")
        raise nodes.SkipNode
    if node["number"]:
        number = get_node_equation_number(self, node)
        self.body.append('<span class="eqno">(%s)' % number)
        self.add_permalink_ref(node, _("Link to this equation"))
        label = node.get("label")
        if label:
            href = _relative(self.builder.current_docname, INDEX_DOC) + "#" + label
            self.body.append(f'<a class="eqlabel reference internal" href="{html.escape(href)}" '
                             'title="Where this equation is computed and cited">'
                             f"{html.escape(label)}</a>")
        self.body.append("</span>")
    self.body.append(self.builder.config.mathjax_display[0])
    parts = [part for part in node.astext().split("\n\n") if part.strip()]
    if len(parts) > 1:
        self.body.append(r" \begin{align}\begin{aligned}")
    for i, part in enumerate(parts):
        part = self.encode(part)
        self.body.append(r"\begin{split}" + part + r"\end{split}" if r"\\" in part else part)
        if i < len(parts) - 1:
            self.body.append(r"\\")
    if len(parts) > 1:
        self.body.append(r"\end{aligned}\end{align} ")
    self.body.append(self.builder.config.mathjax_display[1])
    self.body.append("</div>\n")
    raise nodes.SkipNode


def _use_labelled_display(app):
    if app.builder.format == "html":
        _, depart = app.registry.html_block_math_renderers["mathjax"]
        app.registry.html_block_math_renderers["mathjax"] = (visit_displaymath, depart)


# ----------------------------------------------------------------- the Equations page
class equation_index(nodes.General, nodes.Element):
    """Where the list of every label goes; filled once every page has been read."""


class EquationIndex(Directive):
    def run(self):
        return [equation_index("")]


def _equation_number(env, equation):
    numbers = env.toc_fignumbers.get(equation["docname"], {}).get("displaymath", {}).get(equation["id"], ())
    return tuple(numbers)


def code_page(path):
    """The page name of the highlighted copy of a module, from its path relative to the root: minivae/kl.py."""
    return f"{CODE_PAGES}/{path[:-3]}"


def _link(text, refuri, literal=True):
    reference = nodes.reference("", "", refuri=refuri, internal=True)
    reference += nodes.literal(text, text) if literal else nodes.Text(text)
    return reference


def _fill_index(app, doctree, docname):
    env = app.env
    for placeholder in list(doctree.findall(equation_index)):
        equations = getattr(env, "minivae_equations", {})
        by_label = {}
        for label, path, line, function in code_citations():
            by_label.setdefault(label, []).append(("code", path, line, function))
        for label, notebook, cell in notebook_citations():
            by_label.setdefault(label, []).append(("notebook", notebook, cell, ""))
        entries = []
        order = {name: i for i, name in enumerate(env.toctree_includes.get("index", []))}
        for label, equation in sorted(equations.items(), key=lambda item: (
                _equation_number(env, item[1]) or (999,), order.get(item[1]["docname"], 999), item[0])):
            number = ".".join(map(str, _equation_number(env, equation)))
            page = equation["docname"]
            entry = nodes.container(ids=[label], classes=["equation-entry"])
            head = nodes.paragraph(classes=["equation-head"])
            head += nodes.literal(label, label, classes=["eqlabel-name"])
            head += nodes.Text(" ")
            head += _link(f"({number})" if number else "(equation)",
                          _relative(docname, page) + "#" + equation["id"], literal=False)
            head += nodes.Text(" on ")
            head += _link(env.titles[page].astext(), _relative(docname, page), literal=False)
            entry += head
            entry += nodes.math_block(equation["latex"], equation["latex"], nowrap=False, number=None,
                                      label=None, docname=docname)
            places = nodes.bullet_list(classes=["equation-citations"])
            for kind, where, line, function in by_label.get(label, []):
                item = nodes.paragraph()
                if kind == "code":
                    item += nodes.Text("exercise " if "/exercises/" in where else "code ")
                    item += _link(f"{where}:{line}", _relative(docname, code_page(where)) + f"#L-{line}")
                    if function:
                        item += nodes.Text(" in ")
                        item += nodes.literal(function, function)
                else:
                    item += nodes.Text("notebook ")
                    item += _link(where, _relative(docname, "notebooks/" + where[:-len(".ipynb")]))
                    item += nodes.Text(f", cell {line}")
                places += nodes.list_item("", item)
            if not places.children:
                places += nodes.list_item("", nodes.paragraph(text="cited by no code: derived for the reasoning "
                                                                   "around it"))
            entry += places
            entries.append(entry)
        placeholder.replace_self(entries)


def _index_always_outdated(app, env, added, changed, removed):
    # the list is built from every other page and from the code, so it is rewritten on every build
    return [INDEX_DOC] if INDEX_DOC in env.found_docs else []


# ----------------------------------------------------------------- highlighted code pages
def _link_citations_in_html(source_html, env, from_page):
    equations = getattr(env, "minivae_equations", {})

    def link(match):
        label = _label(match)
        equation = equations.get(label)
        if equation is None:
            return match.group(0)
        href = _relative(from_page, equation["docname"]) + "#" + equation["id"]
        return match.group(0).replace(label, f'<a class="eqcite" href="{href}">{label}</a>', 1)
    return CODE_CITATION.sub(link, source_html)


def _code_pages(app):
    if app.builder.format != "html":
        return
    formatter = HtmlFormatter(linenos="inline", linespans="L", wrapcode=True, cssclass="highlight")
    citing = {path for _, path, _, _ in code_citations()}
    for path in code_files():
        relative = path.relative_to(ROOT).as_posix()
        if relative not in citing:
            continue
        page = code_page(relative)
        body = highlight(path.read_text(encoding="utf-8"), PythonLexer(), formatter)
        body = re.sub(r'<span id="L-(\d+)">', r'<span id="L-\1" class="code-line">', body)
        body = _link_citations_in_html(body, app.env, page)
        title = html.escape(relative)
        context = {"title": title, "body": f'<h1>{title}</h1>\n<div class="highlight-python notranslate minivae-code">'
                                           f"{body}</div>",
                   "parents": [], "display_toc": False, "toc": ""}
        yield page, context, "page.html"


def setup(app):
    app.add_node(equation_label_text, html=(_skip, None), latex=(_skip, None), text=(_skip, None),
                 man=(_skip, None), texinfo=(_skip, None))
    app.add_node(equation_index)
    app.add_directive("equation-index", EquationIndex)
    app.connect("doctree-read", _collect_equations)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    app.connect("env-get-outdated", _index_always_outdated)
    app.connect("builder-inited", _use_labelled_display)
    app.connect("doctree-resolved", _fill_index)
    app.connect("html-collect-pages", _code_pages)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True, "env_version": 1}
