"""Run the command line in this process, as the CLI tests do: ``run(*argv) -> (exit status, stdout, stderr)``."""

import contextlib
import io

from minivae import cli


def run(*argv):
    """``minivae.cli.main(argv)`` -> (exit status, stdout, stderr); never a traceback, nor an exception ignored at
    exit. Arguments may be paths or numbers: each is passed as its string."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main([str(a) for a in argv])
        except SystemExit as exit:
            code = exit.code
    assert "Traceback" not in err.getvalue() and "Exception ignored" not in err.getvalue(), err.getvalue()
    return code, out.getvalue(), err.getvalue()
