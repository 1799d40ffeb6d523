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
    assert namespace["history"].val_loss[-1] < 26.0  # the threshold of tests/test_train.py


def test_ci_runs_the_readme_commands_word_for_word():
    commands = re.findall(r"```bash\n(.*?)\n```", README, re.S)[:2]
    ci = (ROOT / ".ci" / "run").read_text()
    for command in commands:
        assert command in ci, command
