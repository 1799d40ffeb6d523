"""The README's example runs as written, and its two commands are the ones CI runs."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_the_api_example_runs():
    pytest.importorskip("sklearn")
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert blocks, "the README has no python example"
    namespace = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    assert namespace["new"].shape == (16, 64)
    assert namespace["log_px"].shape == (180,)
    # The threshold of tests/test_train.py (1 nat below every independent-pixel model). The example's recipe on
    # seeds 0-4 (VAE(..., seed=s), fit(..., seed=s)): 24.09-24.47; margin 1.5.
    assert namespace["history"].val_loss[-1] < 26.0


def test_ci_runs_the_readme_commands_word_for_word():
    commands = re.findall(r"```bash\n(.*?)\n```", README, re.S)[:2]
    ci = (ROOT / ".ci" / "run").read_text()
    for command in commands:
        assert command in ci, command


PACKAGE = ROOT / "minivae"


def package_parts(package=PACKAGE):
    """The package's modules (``layers.py``) and folders (``exercises/``, ``kernels/``), each one row of the table;
    ``__init__.py`` and ``__main__.py`` are the package itself."""
    modules = {p.name for p in package.glob("*.py") if not p.name.startswith("__")}
    folders = {f"{p.name}/" for p in package.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))}
    return modules | folders


def table_parts(readme):
    """What the "Reading the code" table names in its first column, as :func:`package_parts` names it."""
    section = readme[readme.index("## Reading the code"):]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert rows, "the README has no module table under 'Reading the code'"
    named = set()
    for row in rows:
        for path in re.findall(r"`([^`]+)`", row.split(" | ")[0]):
            path = path.removeprefix("minivae/")
            named.add(path if "/" not in path else path.split("/")[0] + "/")
    return named


def table_problems(readme, package=PACKAGE):
    parts, named = package_parts(package), table_parts(readme)
    return ([f"no row for {part}" for part in sorted(parts - named)]
            + [f"a row for {part}, which the package does not have" for part in sorted(named - parts)])


def test_the_module_table_has_a_row_for_every_module_and_no_other():
    assert not table_problems(README), table_problems(README)


def test_the_table_check_catches_a_missing_and_a_stale_row():
    without_cores = "\n".join(line for line in README.splitlines() if not line.startswith("| `minivae/cores.py`"))
    assert table_problems(without_cores) == ["no row for cores.py"]
    stale = README.replace("| `minivae/ppca.py` |", "| `minivae/ppca.py`, `pca_old.py` |")
    assert table_problems(stale) == ["a row for pca_old.py, which the package does not have"]
    without_exercises = "\n".join(line for line in README.splitlines() if "`minivae/exercises/`" not in line)
    assert table_problems(without_exercises) == ["no row for exercises/"]


def test_the_files_the_suite_starts_first_exist():
    # tests/conftest.py orders the longest files first so that the workers of `python -m pytest -q` finish together;
    # a renamed file would silently drop out of that order
    from conftest import FIRST

    assert len(set(FIRST)) == len(FIRST) and all((ROOT / "tests" / name).is_file() for name in FIRST), FIRST
