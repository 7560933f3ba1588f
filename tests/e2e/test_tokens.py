"""gateway.pipeline.tokens in a fresh interpreter: importing it (and overflow) loads no encoding."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.support import ROOT


def test_import_loads_no_encoding() -> None:
    """Importing gateway.pipeline.tokens and gateway.pipeline.overflow opens no tokenizer file (lazy)."""
    code = textwrap.dedent(
        """
        import sys
        opened = []
        sys.addaudithook(lambda ev, args: opened.append(str(args[0])) if ev == "open" else None)
        import gateway.pipeline.overflow, gateway.pipeline.tokens
        assert not gateway.pipeline.tokens._CACHE, gateway.pipeline.tokens._CACHE
        bad = [p for p in opened if p.endswith(".tiktoken")]
        assert not bad, bad
        gateway.pipeline.tokens.encoding("o200k_base")
        assert [p for p in opened if p.endswith("o200k_base.tiktoken")]
        print("lazy")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "lazy"
