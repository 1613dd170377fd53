"""Run a `dynplan` command with stderr on a real pseudo-terminal (what a user's shell gives
it) and stdout on a pipe, for the progress-bar tests."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

from helpers import REPO

# `python -c` with prog_name: behaves as the installed `dynplan` script (completion variable included)
DYNPLAN = [sys.executable, "-c", "from scaler.cli import main; main(prog_name='dynplan')"]


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed its end of the pty
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def run_on_a_pty(argv: list[str], timeout: float = 120) -> tuple[int, str, str]:
    """(exit code, stdout from a pipe, stderr from a pty)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=slave, cwd=REPO)
    os.close(slave)
    try:
        err = _read_all(master)
    finally:
        os.close(master)
    out = proc.communicate(timeout=timeout)[0]
    return proc.returncode, out.decode(), err.decode()
