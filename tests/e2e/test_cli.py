"""The console entry point as a separate process: ``python -m gateway``."""

from __future__ import annotations

import hashlib
import subprocess
import sys


def test_python_dash_m_gateway():
    out = subprocess.run([sys.executable, "-m", "gateway", "hash-key", "x"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.strip() == hashlib.sha256(b"x").hexdigest()
