"""Start the real ``prm-plugin serve`` command on a free loopback port, and always stop it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

BIN = Path(sys.executable).parent
_URL = re.compile(r"on (http://127\.0\.0\.1:\d+)/v1")


@contextmanager
def cli_server(args: Sequence[str], log: Path, env: Mapping[str, str] | None = None,
               timeout_s: float = 180.0) -> Iterator[str]:
    """``prm-plugin serve --port 0 ARGS`` in a subprocess; yields its base URL.

    Output goes to ``log`` (read for the URL line), so a chatty server never blocks on a
    full pipe. The process is stopped (SIGINT, then SIGKILL) when the block ends.
    """
    full_env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    with log.open("w") as out:
        proc = subprocess.Popen([str(BIN / "prm-plugin"), "serve", "--host", "127.0.0.1", "--port", "0",
                                 "--log-level", "warning", *args], stdout=out, stderr=subprocess.STDOUT,
                                env=full_env)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            found = _URL.search(log.read_text())
            if found:
                break
            if proc.poll() is not None:
                raise RuntimeError(f"prm-plugin serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"prm-plugin serve did not start in {timeout_s} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield found.group(1)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)
