"""``ijseg serve``: the ``predict`` and ``measure`` commands as one long-lived process.

An ImageJ or Fiji that runs on its own has no Python inside it, so its IJSeg commands call the
``ijseg`` command line. Started once per image, that costs the TensorFlow import and the model
load every time (seconds per image); the IJSeg plugin therefore starts ``ijseg serve`` once,
keeps it for the rest of the ImageJ session and sends it one command line per image. Loaded
models stay in memory (:class:`ijseg.pipeline.PredictorCache`), reloaded when their files change.

Protocol, one request and one reply at a time, UTF-8 text over the process's standard input and
output (standard error carries the log):

* on start the server writes ``ijseg serve VERSION``;
* a request is one line, a JSON array of the command-line arguments of ``predict`` or
  ``measure`` (global options such as ``-q`` may come first), for example
  ``["-q", "predict", "--model", "M", "--input", "in.tif", "--out", "O"]``;
* the reply is what the command printed (standard output and error), each line prefixed with
  ``| ``, then the line ``= CODE`` with its exit code (0 success, 1 error, 2 bad arguments);
* the server ends at the end of its input, that is when ImageJ exits.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Callable
from typing import TextIO

from . import __version__

__all__ = ["serve", "COMMANDS"]

log = logging.getLogger(__name__)

#: the commands a server runs: those of the IJSeg plugin
COMMANDS = ("predict", "measure")


def _reply(out: TextIO, text: str, code: int) -> None:
    for line in text.splitlines():
        out.write(f"| {line}\n")
    out.write(f"= {code}\n")
    out.flush()


def run_request(line: str, run: Callable[[list[str]], int]) -> tuple[str, int]:
    """Run one request line with ``run`` (the command line's entry); returns (what it printed,
    exit code)."""
    try:
        argv = json.loads(line)
    except json.JSONDecodeError as err:
        return f"ijseg serve: error: a request is a JSON array of arguments, got {line[:80]!r} ({err})", 2
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        return f"ijseg serve: error: a request is a JSON array of strings, got {line[:80]!r}", 2
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in COMMANDS:
        return f"ijseg serve: error: only {' and '.join(COMMANDS)} run in a server, got {command!r}", 2
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        code = run(argv)
    return buf.getvalue(), code


def serve(inp: TextIO, out: TextIO, run: Callable[[list[str]], int]) -> int:
    """Answer requests from ``inp`` on ``out`` until ``inp`` ends (see the module text); ``run``
    runs one command line and returns its exit code (``ijseg.cli.run`` with a model cache).

    Examples
    --------
    >>> import io
    >>> out = io.StringIO()
    >>> serve(io.StringIO('["train", "--data", "d"]\\n'), out, run=lambda argv: 0)
    0
    >>> print(out.getvalue().split("\\n", 1)[1], end="")
    | ijseg serve: error: only predict and measure run in a server, got 'train'
    = 2
    """
    out.write(f"ijseg serve {__version__}\n")
    out.flush()
    for line in inp:
        line = line.strip()
        if line:
            _reply(out, *run_request(line, run))
    return 0
