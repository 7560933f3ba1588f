"""A new user's first hour, as the README tells it, run as they would run it.

- ``switchyard serve`` with no config, in a subprocess with a clean environment (on a free port via
  ``--port``): it listens on 127.0.0.1 only and says so, with the key, in one line; then the
  README's curl command and Python snippet, copied out of the README and run literally.
- ``switchyard check-config config.example.yaml`` passes as shipped, with no variable set.
- A broken file is reported in one pass: every problem at once, with "did you mean" hints.
- The README and docs/ are self-contained: links resolve, no internal vocabulary, and no comment in
  the code points at a document outside the repository.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parent.parent.parent
README = (ROOT / "README.md").read_text()
FIRST_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/switchyard serve"
TEST_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -q -e '.[dev]' && .venv/bin/python -m pytest"


def switchyard(*args: str) -> list[str]:
    """The ``switchyard`` command as installed next to this Python (else ``python -m gateway``)."""
    script = Path(sys.executable).parent / "switchyard"
    return [str(script), *args] if script.exists() else [sys.executable, "-m", "gateway", *args]


def clean_env() -> dict[str, str]:
    """What a fresh shell has: a PATH, a HOME, no SWITCHYARD_* or provider variables. PYTHONPATH
    points at this checkout, so the code under test is this one even if another is installed."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(ROOT), "PYTHONPATH": str(ROOT)}


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


# -- serve with no config, then the README's own lines --------------------------------------------


@pytest.fixture(scope="module")
def demo() -> Iterator[tuple[int, str]]:
    port = free_port()
    proc = subprocess.Popen(
        switchyard("serve", "--port", str(port)),
        cwd=ROOT,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield port, line
    finally:
        proc.terminate()
        proc.wait(20)


def test_the_readme_shows_the_two_commands() -> None:
    assert FIRST_COMMAND in blocks("sh")[0]
    assert any(TEST_COMMAND in b for b in blocks("sh"))


def test_serve_without_config_says_where_and_with_which_key(demo: tuple[int, str]) -> None:
    port, line = demo
    assert line.startswith(f"switchyard: listening on http://127.0.0.1:{port}/v1 with the demo key sk-switchyard-demo")
    # The README shows the same line (for the default port).
    shown = next(b for b in blocks("text") if "listening on" in b).strip()
    assert line.replace(str(port), "8080").startswith(shown.removesuffix("...)"))


def test_serve_without_config_listens_on_loopback_only(demo: tuple[int, str]) -> None:
    port, _ = demo
    addresses = {a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
    addresses.discard("127.0.0.1")
    for addr in addresses - {"127.0.1.1"}:  # Debian maps the host name to 127.0.1.1: also loopback
        with socket.socket() as s:
            s.settimeout(1)
            assert s.connect_ex((addr, port)) != 0, f"the demo answers on {addr}"


def test_the_readme_curl_command(demo: tuple[int, str]) -> None:
    port, _ = demo
    curl = next(b for b in blocks("sh") if b.startswith("curl ") and "127.0.0.1:8080" in b)  # the first-hour one
    out = subprocess.run(
        ["bash", "-c", curl.replace("127.0.0.1:8080", f"127.0.0.1:{port}")],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    answer = json.loads(out.stdout)
    assert answer["object"] == "chat.completion" and answer["choices"][0]["message"]["content"] == "hello there"


def test_the_readme_python_snippet(demo: tuple[int, str]) -> None:
    port, _ = demo
    (snippet,) = [b for b in blocks("python") if "from openai import OpenAI" in b]
    out = subprocess.run(
        [sys.executable, "-c", snippet.replace("127.0.0.1:8080", f"127.0.0.1:{port}")],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "hi",
        "one two three",
        "['a', 'a', 'b', 'b']",
        "2",
        "['mock/echo', 'mock/embed', 'echo', 'mock/*']",
    ]


def test_the_agents_page_examples_run_against_the_demo(demo: tuple[int, str]) -> None:
    for module in ("agents", "instructor", "langchain_openai"):
        pytest.importorskip(module)
    port, _ = demo
    page = (ROOT / "docs" / "agents.md").read_text()
    program = "\n".join(re.findall(r"```python\n(.*?)```", page, re.S)) + "\nprint(user)\n"
    out = subprocess.run(
        [sys.executable, "-c", program.replace("127.0.0.1:8080", f"127.0.0.1:{port}")],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["Sunny in Use get_weather for Paris.", "name='Jason is 25' age=1"]


def test_a_busy_port_is_a_clear_error_not_a_listening_line() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = subprocess.run(
            switchyard("serve", "--port", str(port)), capture_output=True, text=True, timeout=30, env=clean_env()
        )
    assert out.returncode == 1 and "listening" not in out.stdout
    assert out.stderr.strip() == f"switchyard: cannot listen on http://127.0.0.1:{port}: Address already in use"


# -- check-config ------------------------------------------------------------------------------


def test_check_config_passes_on_the_example_as_shipped() -> None:
    out = subprocess.run(
        switchyard("check-config", "config.example.yaml"),
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok: 4 keys, 8 providers") and out.stderr == ""


def test_check_config_reports_every_problem_in_one_pass(tmp_path: Path) -> None:
    bad = tmp_path / "config.yaml"
    bad.write_text(
        "server:\n"
        "  max_body_byte: 1000000\n"
        "  port: ${PORT}\n"
        "keys:\n"
        '  - {name: team-a, key: "${TEAM_A_KEY}", limits: {rpn: 10}}\n'
        "  - {name: team-b, sha256: nothex}\n"
        "providers:\n"
        "  openai: {kind: opnai, base_url: https://api.openai.com/v1}\n"
        "models:\n"
        "  - {name: smart, deployments: [{provider: azure, upstream: gpt-4o}]}\n"
    )
    out = subprocess.run(
        switchyard("check-config", str(bad)), env=clean_env(), capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 2 and out.stdout == ""
    hint = "(set it, or write ${%s:-default})"
    assert out.stderr.splitlines() == [
        f"{bad}: server.port: environment variable PORT is not set {hint % 'PORT'}",
        f"{bad}: server.max_body_byte: unknown field; did you mean `max_body_bytes`?",
        f"{bad}: keys.0.key: environment variable TEAM_A_KEY is not set {hint % 'TEAM_A_KEY'}",
        f"{bad}: keys.0.limits.rpn: unknown field; did you mean `rpm`?",
        f"{bad}: keys.1.sha256: must be a sha256 hex digest (64 hex characters); see `switchyard hash-key`",
        f"{bad}: providers.openai.kind: Input should be 'openai', 'azure', 'fireworks', 'anthropic', "
        "'gemini', 'cohere', 'mock' or 'bedrock'; did you mean `openai`?",
        f"{bad}: models.0.deployments.0.provider: unknown provider 'azure'",
    ]


# -- self-contained documentation ----------------------------------------------------------------

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
INTERNAL = re.compile(r"seed 0\d\d|\bDESIGN\b|DESIGN\.md|REVIEW-|§|\bthe contract\b|/work/", re.I)
CODE_DIRS = ("gateway", "providers", "simulators", "bench", "deploy", "tests")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_speak_no_internal_language_and_their_links_resolve(doc: Path) -> None:
    text = doc.read_text()
    assert not INTERNAL.findall(text)
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if not target.startswith(("http://", "https://")):
            assert (doc.parent / target).exists(), f"{doc.name} links to a missing {target}"


def test_the_docs_folder_covers_what_a_user_needs() -> None:
    text = "\n".join(p.read_text() for p in DOCS)
    for needed in (
        "/v1/responses",
        "/v1/messages/count_tokens",
        "max_body_bytes",
        "model_not_allowed",
        "{prefix}usage:",
        "switchyard_requests_total",
        "unknown_prefix_mode",
    ):
        assert needed in text, needed


def test_no_comment_in_the_code_points_outside_the_repository() -> None:
    pointer = re.compile(r"\bDESIGN\b|seed 0\d\d|§|/work/shared")
    found = []
    for d in CODE_DIRS:
        for path in (ROOT / d).rglob("*"):
            if (
                path.is_file()
                and path.suffix in (".py", ".yaml", ".yml", ".md", ".lua", ".json", "")
                and ("__pycache__" not in path.parts)
                # Ignored by git, not ours: the bench's installed peers (bench/.peers/), any hidden tree.
                and not any(part.startswith(".") for part in path.relative_to(ROOT).parts)
            ):
                for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                    if pointer.search(line) and path.name != "test_first_hour.py":
                        found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not found, "\n".join(found)
