"""The bench's output: one markdown table of rows, the issue's targets, and the notes that explain them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bench.loads import Result
from bench.scenarios import BARE, DIRECT, FLOOR_BARE, GATEWAY, PEERS, SCENARIOS, Scenario


@dataclass
class Row:
    scenario: Scenario
    target: str
    clients: int
    result: Result | None = None
    cpu_ms: float | None = None  # proxy process CPU per completed request
    peak_rss_mb: float | None = None
    rss_before_mb: float | None = None
    added_p50_ms: float | None = None
    added_p99_ms: float | None = None
    python_load: bool = False
    other_cpus: float = 0.0  # CPUs' worth of work by processes outside the bench during the row
    notes: list[str] = field(default_factory=list)
    ttfb_p50_ms: float | None = None  # time to first byte: the probe's (streams), else the load's own
    ttfb_p99_ms: float | None = None
    added_ttfb_ms: float | None = None
    cpu_x_floor: float | None = None  # CPU/request over the bare aiohttp proxy's in the same scenario
    rounds: list[float | None] = field(default_factory=list)  # each round's CPU/request, with --rounds

    @property
    def p50(self) -> float | None:
        r = self.result
        return None if r is None else (r.ttfb_p50_ms if self.scenario.load == "ttfb" else r.p50_ms)

    @property
    def p99(self) -> float | None:
        r = self.result
        return None if r is None else (r.ttfb_p99_ms if self.scenario.load == "ttfb" else r.p99_ms)

    @property
    def ttfb(self) -> tuple[float | None, float | None]:
        r = self.result
        if self.ttfb_p50_ms is None and r is not None and self.scenario.load in ("ttfb", "burst"):
            return r.ttfb_p50_ms, r.ttfb_p99_ms
        return self.ttfb_p50_ms, self.ttfb_p99_ms

    @property
    def kb_per_stream(self) -> float | None:
        r = self.result
        if r is None or self.peak_rss_mb is None or self.rss_before_mb is None or not r.max_open:
            return None
        return (self.peak_rss_mb - self.rss_before_mb) * 1024 / r.max_open


def add_deltas(rows: list[Row]) -> None:
    """Latency (and time to first byte) each proxy adds over going straight to the upstream, and its CPU over the
    bare proxy's, within one scenario of one run."""
    floor = next((r for r in rows if r.target == FLOOR_BARE and r.cpu_ms), None)
    for r in rows:
        if floor is not None and r.cpu_ms and r.target != FLOOR_BARE:
            r.cpu_x_floor = r.cpu_ms / (floor.cpu_ms or 1)
    direct = next((r for r in rows if r.target == DIRECT and r.result), None)
    if direct is None:
        return
    d_ttfb = direct.ttfb[0]
    for r in rows:
        if r.target == DIRECT:
            continue
        if direct.p50 is not None and direct.p99 is not None and r.p50 is not None and r.p99 is not None:
            r.added_p50_ms = r.p50 - direct.p50
            r.added_p99_ms = r.p99 - direct.p99
        if d_ttfb is not None and r.ttfb[0] is not None:
            r.added_ttfb_ms = r.ttfb[0] - d_ttfb


def _f(v: float | None, digits: int) -> str:
    return "—" if v is None else f"{v:,.{digits}f}"


def _notes(row: Row) -> str:
    notes = list(row.notes)
    r = row.result
    if r is not None:
        if row.scenario.load == "ttfb":
            notes.append(f"p50/p99 = time to first byte (whole stream p50 {_f(r.p50_ms, 2)} ms)")
        if len(row.rounds) > 1:
            notes.append("CPU per round " + ", ".join(_f(c, 3) for c in row.rounds) + ": median shown")
        if row.scenario.load == "burst":
            notes.append(f"{r.requests:,}/{row.clients:,} complete, {r.max_open:,} open at once")
            if row.target != DIRECT and row.kb_per_stream is not None:
                notes.append(f"{row.kb_per_stream:,.0f} KB per stream")
        if not r.requests and not r.errors:
            notes.append("no request completed within the window")
        elif r.requests < FEW_REQUESTS and row.scenario.load != "burst":
            notes.append(
                f"only {r.requests} requests completed: CPU/req also holds idle time or requests left in flight"
            )
        if r.error_kinds:
            notes.append(f"errors: {r.error_kinds}")
    if row.other_cpus >= OTHER_CPU_NOTE:
        notes.append(f"machine busy with other work: {row.other_cpus:.1f} CPU")
    if row.python_load:
        notes.append("Python load generator (shares the CPU)")
    return "; ".join(notes)


OTHER_CPU_NOTE = 0.2
FEW_REQUESTS = 50


HEADER = (
    "| scenario | target | clients | req/s | p50 ms | p99 ms | added p50 / p99 ms | TTFB p50 / p99 ms (added) "
    "| CPU ms/req | x floor | peak RSS MB | errors | notes |\n|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"
)


def _ttfb(row: Row) -> str:
    p50, p99 = row.ttfb
    if p50 is None or p99 is None:
        return ""
    added = "" if row.added_ttfb_ms is None else f" ({row.added_ttfb_ms:+.2f})"
    return f"{p50:,.2f} / {p99:,.2f}{added}"


def render_rows(rows: list[Row]) -> str:
    lines, last = [HEADER], None
    for row in rows:
        r = row.result
        name = "" if row.scenario is last else f"**{row.scenario.name}**: {row.scenario.title}"
        last = row.scenario
        added = "" if row.added_p50_ms is None else f"{row.added_p50_ms:+.2f} / {row.added_p99_ms:+.2f}"
        cells = [
            name,
            row.target,
            f"{row.clients:,}",
            "—" if r is None else f"{r.rps:,.0f}",
            _f(row.p50, 2),
            _f(row.p99, 2),
            added,
            _ttfb(row),
            _f(row.cpu_ms, 3),
            "" if row.cpu_x_floor is None else f"{row.cpu_x_floor:.2f}",
            _f(row.peak_rss_mb, 0),
            "—" if r is None else f"{r.errors:,}",
            _notes(row),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _get(rows: list[Row], scenario: str, target: str) -> Row | None:
    return next((r for r in rows if r.scenario.name == scenario and r.target == target and r.result), None)


@dataclass(frozen=True)
class Goal:
    text: str
    measure: Callable[[list[Row], float | None], float | None]
    limit: float
    unit: str
    at_least: bool = False


def _attr(scenario: str, target: str, fn: Callable[[Row], float | None]) -> Callable[..., float | None]:
    def measure(rows: list[Row], idle: float | None) -> float | None:
        row = _get(rows, scenario, target)
        return None if row is None else fn(row)

    return measure


def _cpu_ratio(scenario: str, target: str = GATEWAY) -> Callable[..., float | None]:
    def measure(rows: list[Row], idle: float | None) -> float | None:
        row = _get(rows, scenario, target)
        return None if row is None else row.cpu_x_floor

    return measure


def _incomplete(row: Row) -> float | None:
    return None if row.result is None else row.clients - row.result.requests


def _ratio_goal(sc: Scenario) -> Goal:
    kind = "translated" if sc.translated else "native" if sc.api != "chat" else ""
    what = f"{sc.api.capitalize()} API stream, {kind}" if kind else sc.title.split(",")[0]
    return Goal(f"CPU/request vs the bare proxy: {what} (`{sc.name}`)", _cpu_ratio(sc.name), sc.cpu_target or 0, "x")


# Issue 20's targets first (one CPU ratio per scenario that names one), then the earlier ones still in force.
GOALS = (
    *(_ratio_goal(sc) for sc in SCENARIOS if sc.cpu_target is not None),
    Goal("5,000 concurrent slow streams: peak RSS", _attr("streams-5000", GATEWAY, lambda r: r.peak_rss_mb), 400, "MB"),
    Goal("idle RSS per worker (after start-up and one request)", lambda rows, idle: idle, 80, "MB"),
    Goal(
        "non-streaming requests/s per worker (32 clients)",
        _attr("chat-32", GATEWAY, lambda r: r.result and r.result.rps),
        3000,
        "req/s",
        True,
    ),
    Goal("streaming added time to first byte, p50", _attr("ttfb", GATEWAY, lambda r: r.added_p50_ms), 1.0, "ms"),
    Goal(
        "500 ms upstream, 256 clients: added latency p50",
        _attr("slow-256", GATEWAY, lambda r: r.added_p50_ms),
        10,
        "ms",
    ),
    Goal(
        "500 ms upstream, 256 clients: added latency p99",
        _attr("slow-256", GATEWAY, lambda r: r.added_p99_ms),
        70,
        "ms",
    ),
    Goal("slow streams: streams not completed", _attr("streams-5000", GATEWAY, _incomplete), 0, "streams"),
)


def render_goals(rows: list[Row], idle_rss_per_worker: float | None, rounds: int = 1) -> str:
    how = f"median of {rounds} alternating rounds" if rounds > 1 else "one round"
    lines = [
        f"| target (reported, never asserted; CPU ratios: {how}) | measured | goal | verdict |",
        "|---|--:|--:|---|",
    ]
    for g in GOALS:
        v = g.measure(rows, idle_rss_per_worker)
        if v is None:
            verdict, shown = "not measured", "—"
        else:
            ok = v >= g.limit if g.at_least else v <= g.limit
            verdict, shown = ("met" if ok else "**missed**"), f"{v:,.2f} {g.unit}"
        lines.append(f"| {g.text} | {shown} | {'>=' if g.at_least else '<='} {g.limit:,g} {g.unit} | {verdict} |")
    return "\n".join(lines)


def render_summary(rows: list[Row], rounds: int = 1) -> str | None:
    """Per scenario: CPU/request of the floor, the gateway and each peer (x the floor), for the README's table."""
    shown = [t for t in (FLOOR_BARE, GATEWAY, *PEERS) if any(r.target == t and r.cpu_ms for r in rows)]
    if GATEWAY not in shown or len(shown) < 2:
        return None
    head = ["scenario", *(f"{t} CPU ms/req" for t in shown)]
    lines = [
        "CPU per request, x the bare aiohttp proxy of the same scenario"
        + (f" (gateway and floor: median of {rounds} rounds)" if rounds > 1 else "")
        + ":",
        "",
        "| " + " | ".join(head) + " |",
        "|---|" + "--:|" * len(shown),
    ]
    for name in dict.fromkeys(r.scenario.name for r in rows):
        cells = [name]
        for t in shown:
            row = _get(rows, name, t)
            if row is None or not row.cpu_ms:
                note = next((r.notes[0] for r in rows if r.scenario.name == name and r.target == t and r.notes), "")
                cells.append("n/a" if note.startswith("not supported") else "—")
                continue
            errors = f", {row.result.errors:,} errors" if row.result and row.result.errors else ""
            x = "" if row.cpu_x_floor is None else f" ({row.cpu_x_floor:.2f}x)"
            cells.append(f"{row.cpu_ms:.3f}{x}{errors}")
        if any(c not in ("—", "n/a") for c in cells[2:]):
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def client_choice(rows: list[Row]) -> str | None:
    """Which upstream client the bare proxy measured cheapest per request (non-streaming, 32 clients)."""
    cpu = {t: r.cpu_ms for t in BARE if (r := _get(rows, "chat-32", t)) and r.cpu_ms}
    if not cpu:
        return None
    ranked = sorted(cpu.items(), key=lambda kv: kv[1])
    best = ranked[0][1]
    parts = [f"{t.removeprefix('bare-')} {v:.3f} ms ({v / best:.1f}x)" for t, v in ranked]
    return "Upstream client, by CPU per request of the bare proxy at 32 clients: " + ", ".join(parts) + "."
