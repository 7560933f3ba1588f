"""What the bench measures: the scenarios, the targets they compare and the request bodies they send."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import orjson

DIRECT = "direct"
GATEWAY = "gateway"
BARE = ("bare-aiohttp", "bare-httpx-aiohttp", "bare-httpx")
ALL_TARGETS = (DIRECT, *BARE, GATEWAY)
# The bare proxy with every client runs where the client choice is decided (CPU per request, streaming,
# a pool of hundreds of slow requests); elsewhere the aiohttp one is the floor.
FLOOR = (DIRECT, "bare-aiohttp", GATEWAY)

UPSTREAM_MODEL = "gpt-4o-mini"
CHUNKS = 20
SLOW_LATENCY_MS = 500
# Slow streams: few chunks, far apart (a model thinking), so the streams overlap for seconds while the
# load generator and upstream spend little CPU on them.
SLOW_STREAM_CHUNKS = 5
SLOW_STREAM_PACE_MS = 700
# 92,300 words of the prose below are 100,0xx tokens in o200k_base (measured with tiktoken).
WORDS_100K_TOKENS = 92_300


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    vendor: str  # which simulated upstream: fast, slow or trickle
    stream: bool
    clients: int
    load: str  # "rate": closed loop (wrk); "ttfb": Python client timing first bytes; "burst": N streams at once
    targets: tuple[str, ...] = ALL_TARGETS
    prompt_words: int = 0  # 0: a short chat prompt
    stagger_ms: int = 0  # each client's first request starts at a random moment within this many ms

    def model(self, target: str) -> str:
        # Straight to the upstream there is no routing: send the name the gateway would send.
        return UPSTREAM_MODEL if target == DIRECT else f"{self.vendor}/{UPSTREAM_MODEL}"


SCENARIOS = (
    Scenario("chat-32", "non-streaming chat, 32 clients", "fast", False, 32, "rate"),
    Scenario("chat-256", "non-streaming chat, 256 clients", "fast", False, 256, "rate", FLOOR),
    Scenario("stream-32", f"streaming chat ({CHUNKS} chunks), 32 clients", "fast", True, 32, "rate"),
    Scenario("ttfb", f"streaming chat ({CHUNKS} chunks), 1 client: time to first byte", "fast", True, 1, "ttfb", FLOOR),
    Scenario(
        "slow-256",
        f"{SLOW_LATENCY_MS} ms upstream, non-streaming, 256 clients",
        "slow",
        False,
        256,
        "rate",
        stagger_ms=SLOW_LATENCY_MS,
    ),
    Scenario(
        "streams-5000",
        f"concurrent slow streams ({SLOW_STREAM_CHUNKS} chunks, paced)",
        "trickle",
        True,
        5000,
        "burst",
        FLOOR,
    ),
    Scenario(
        "prompt-100k",
        "100k-token prompt, overflow check on, 4 clients",
        "fast",
        False,
        4,
        "rate",
        FLOOR,
        WORDS_100K_TOKENS,
    ),
)
BY_NAME = {s.name: s for s in SCENARIOS}

_VOCABULARY = (
    "the of and to in is that for it with as was on be at by this had not are but from or have an they which one "
    "you were her all she there would their we him been has when who will more no if out so said what up its about "
    "into than them can only other new some could time these two may then do first any my now such like our over "
    "man me even most made after also did many before must through back years where much your way well down should "
    "because each just those people how too little state good very make world still own see men work long here get "
    "both between life being under never day same another know while last might us great old year off come since "
    "against go came right used take three"
)
_WORDS = _VOCABULARY.split()


def prose(n_words: int, seed: int = 0) -> str:
    """Deterministic English-like sentences: tokenizes like real text, unlike one repeated word."""
    rnd = random.Random(seed)
    sentences, i = [], 0
    while i < n_words:
        k = min(rnd.randint(8, 16), n_words - i)
        words = [rnd.choice(_WORDS) for _ in range(k)]
        sentences.append(" ".join(words).capitalize() + ".")
        i += k
    return " ".join(sentences)


def body(scenario: Scenario, target: str) -> bytes:
    content = prose(scenario.prompt_words) if scenario.prompt_words else "Say hello to the benchmark."
    req: dict[str, object] = {"model": scenario.model(target), "messages": [{"role": "user", "content": content}]}
    if scenario.stream:
        req["stream"] = True
    if scenario.prompt_words:
        req["max_tokens"] = 16
    return orjson.dumps(req)


def body_file(directory: Path, scenario: Scenario, target: str) -> Path:
    """The request body on disk (wrk and the Python load generator read it), written once per shape."""
    kind = DIRECT if target == DIRECT else "proxied"
    path = directory / f"body-{scenario.vendor}-{kind}-{int(scenario.stream)}-{scenario.prompt_words}.json"
    if not path.exists():
        path.write_bytes(body(scenario, target))
    return path
