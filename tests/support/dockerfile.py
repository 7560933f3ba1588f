"""A Dockerfile parser and a .dockerignore matcher, enough to check deploy/ without a Docker engine.

``parse_dockerfile`` reads stages and instructions (continuations joined, comments dropped, ``ARG``
defaults before the first ``FROM`` substituted into the base images); ``ignore_patterns`` and
``ignored`` follow Docker's patternmatcher (``**``, ``*``, ``?``, ``[...]``, ``!`` re-includes, the last
matching pattern decides, a pattern also matches the path's parent folders); ``build_context`` lists
the files ``docker build`` would send.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

Patterns = list[tuple[bool, str, re.Pattern[str]]]


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, op: str) -> list[str]:
        return [arg for o, arg in self.instructions if o == op]

    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for arg in self.all("ENV"):
            for pair in shlex.split(arg):
                key, _, value = pair.partition("=")
                out[key] = value
        return out


def logical_lines(text: str) -> list[str]:
    """Instructions with line continuations joined; comment lines dropped (also inside a continuation)."""
    lines: list[str] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1].strip() + " "
            continue
        lines.append(buf + line)
        buf = ""
    assert not buf, "Dockerfile ends inside a line continuation"
    return lines


def parse_dockerfile(text: str) -> list[Stage]:
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical_lines(text):
        op, _, rest = line.partition(" ")
        op, rest = op.upper(), rest.strip()
        if op == "ARG" and not stages:
            key, _, default = rest.partition("=")
            args[key] = default
        elif op == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), ""), words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        else:
            assert stages, f"{op} before the first FROM"
            stages[-1].instructions.append((op, rest))
    return stages


def ignore_patterns(text: str) -> Patterns:
    """(negated, source, regex) per pattern, translated the way Docker's patternmatcher reads them."""
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        rx = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                rx, i = rx + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                rx, i = rx + ".*", i + 2
            elif pattern[i] == "*":
                rx, i = rx + "[^/]*", i + 1
            elif pattern[i] == "?":
                rx, i = rx + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                rx, i = rx + pattern[i : end + 1], end + 1
            else:
                rx, i = rx + re.escape(pattern[i]), i + 1
        out.append((negated, pattern, re.compile(rx)))
    return out


def ignored(rel: str, patterns: Patterns) -> bool:
    # A pattern matches a path or any of its parent directories; the last matching pattern decides.
    parts = rel.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    out = False
    for negated, _, rx in patterns:
        if any(rx.fullmatch(p) for p in prefixes):
            out = not negated
    return out


def build_context(root: Path, dockerignore: Path) -> list[str]:
    """The files `docker build -f <Dockerfile> <root>` sends, given the Dockerfile's own ignore file."""
    patterns = ignore_patterns(dockerignore.read_text(encoding="utf-8"))
    reincludes = [src for negated, src, _ in patterns if negated]
    files: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        # Skip walking ignored folders (.venv, .git) that no `!pattern` can reach into.
        dirnames[:] = [
            d
            for d in dirnames
            if not ignored(rel_dir + d, patterns)
            or any(src.startswith(f"{rel_dir}{d}/") or src.startswith("**") for src in reincludes)
        ]
        files.extend(rel_dir + f for f in filenames if not ignored(rel_dir + f, patterns))
    return sorted(files)
