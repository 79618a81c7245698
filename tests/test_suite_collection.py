"""The suite collects whatever subset of folders it is given: a test module that imported its
helpers with ``from conftest import ...`` got another folder's conftest once two folders were
collected together (``pytest tests/data tests/text`` failed with an ImportError)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_every_folder_collects_alongside_the_others():
    folders = sorted(str(p) for p in TESTS.iterdir() if p.is_dir() and p.name != "__pycache__")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
        + folders,
        cwd=TESTS.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
