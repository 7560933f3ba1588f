"""What the bench measures: the scenarios, the targets they compare and the request bodies they send."""

from __future__ import annotations

import fnmatch
import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

import orjson

DIRECT = "direct"
GATEWAY = "gateway"
BARE = ("bare-aiohttp", "bare-switchyard", "bare-httpx-aiohttp", "bare-httpx")
FLOOR_BARE = "bare-aiohttp"  # the floor every CPU ratio is taken against
# Other gateways a user might pick instead, run when installed (bench/peers.py).
PEERS = ("litellm", "portkey")
ALL_TARGETS = (DIRECT, *BARE, GATEWAY, *PEERS)
# The bare proxy with every client runs where the client choice is decided (CPU per request, streaming,
# a pool of hundreds of slow requests); elsewhere the aiohttp one is the floor.
FLOOR = (DIRECT, FLOOR_BARE, GATEWAY, *PEERS)

CHUNKS = 20
SLOW_LATENCY_MS = 500
# Slow streams: few chunks, far apart (a model thinking), so the streams overlap for seconds while the
# load generator and upstream spend little CPU on them.
SLOW_STREAM_CHUNKS = 5
SLOW_STREAM_PACE_MS = 700
# 92,300 words of the prose below are 100,0xx tokens in o200k_base (measured with tiktoken).
WORDS_100K_TOKENS = 92_300
PROMPT = "Say hello to the benchmark."
MAX_TOKENS = 256  # the budget Messages requests must name (and Responses ones do): above the 20 chunks
ANTHROPIC_VERSION = "2023-06-01"
ANTHROPIC_VENDORS = ("anthropic",)  # simulated upstreams that speak Anthropic's Messages API


@dataclass(frozen=True)
class Api:
    """A client API: its path, how its clients send the key, and how its streams end."""

    name: str
    path: str
    end: str  # a stream's last event: "[DONE]" or the terminal event's type ("" for no stream)
    key_header: str = "authorization"


APIS = {
    a.name: a
    for a in (
        Api("chat", "/v1/chat/completions", "[DONE]"),
        Api("completions", "/v1/completions", "[DONE]"),
        Api("embeddings", "/v1/embeddings", ""),
        Api("responses", "/v1/responses", "response.completed"),
        Api("messages", "/v1/messages", "message_stop", "x-api-key"),
    )
}


@dataclass(frozen=True)
class Request:
    """What a load generator sends to one target: path, body, headers, and the end a stream must reach."""

    path: str
    body: bytes
    headers: tuple[tuple[str, str], ...]
    end: str | None  # None: not a stream


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    vendor: str  # which simulated upstream: fast, slow, trickle (OpenAI dialect) or anthropic
    stream: bool
    clients: int
    load: str  # "rate": closed loop (wrk); "ttfb": Python client timing first bytes; "burst": N streams at once
    targets: tuple[str, ...] = ALL_TARGETS
    prompt_words: int = 0  # 0: a short prompt
    stagger_ms: int = 0  # each client's first request starts at a random moment within this many ms
    api: str = "chat"  # the client API the gateway and the peers are sent
    # The API the gateway speaks to the upstream when it translates (None: native, the same bytes).
    # The direct and bare rows send that upstream request themselves: the floor relays the upstream's
    # stream unchanged, so the ratio prices the translation too.
    upstream_api: str | None = None
    cpu_target: float | None = None  # issue 20: gateway CPU/request at most this many times the floor's

    @property
    def floor_api(self) -> str:
        return self.upstream_api or self.api

    @property
    def translated(self) -> bool:
        return self.floor_api != self.api

    def upstream_model(self, api: str) -> str:
        if self.vendor in ANTHROPIC_VENDORS:
            return "claude-sonnet-4-5"
        return {"embeddings": "text-embedding-3-small", "completions": "gpt-3.5-turbo-instruct"}.get(api, "gpt-4o-mini")

    def api_for(self, target: str) -> str:
        """The API a target is sent: the upstream's own for direct and the bare proxies, the client's otherwise."""
        return self.floor_api if target == DIRECT or target in BARE else self.api

    def model(self, target: str) -> str:
        # Straight to the upstream (and to Portkey, which is told the upstream by headers) there is no
        # routing: send the name the gateway would send.
        name = self.upstream_model(self.api_for(target))
        return name if target in (DIRECT, "portkey") else f"{self.vendor}/{name}"


SCENARIOS = (
    Scenario("chat-32", "non-streaming chat, 32 clients", "fast", False, 32, "rate", cpu_target=1.3),
    Scenario("chat-256", "non-streaming chat, 256 clients", "fast", False, 256, "rate", FLOOR),
    Scenario("stream-32", f"streaming chat ({CHUNKS} chunks), 32 clients", "fast", True, 32, "rate", cpu_target=1.3),
    Scenario(
        "completions-32",
        "legacy completions, non-streaming, 32 clients",
        "fast",
        False,
        32,
        "rate",
        FLOOR,
        api="completions",
    ),
    Scenario(
        "embeddings-32",
        "embeddings (one input, 1,536 floats), 32 clients",
        "fast",
        False,
        32,
        "rate",
        FLOOR,
        api="embeddings",
    ),
    Scenario(
        "responses-stream-32",
        f"Responses API stream ({CHUNKS} deltas), native: OpenAI upstream's /v1/responses, 32 clients",
        "fast",
        True,
        32,
        "rate",
        FLOOR,
        api="responses",
        cpu_target=1.3,
    ),
    Scenario(
        "messages-stream-32",
        f"Messages API stream ({CHUNKS} deltas), native: Anthropic upstream's /v1/messages, 32 clients",
        "anthropic",
        True,
        32,
        "rate",
        FLOOR,
        api="messages",
        cpu_target=1.3,
    ),
    Scenario(
        "messages-to-openai-32",
        f"Messages API stream translated to an OpenAI chat upstream ({CHUNKS} chunks), 32 clients",
        "fast",
        True,
        32,
        "rate",
        FLOOR,
        api="messages",
        upstream_api="chat",
        cpu_target=2.5,
    ),
    Scenario(
        "responses-to-anthropic-32",
        f"Responses API stream translated to an Anthropic upstream ({CHUNKS} deltas), 32 clients",
        "anthropic",
        True,
        32,
        "rate",
        FLOOR,
        api="responses",
        upstream_api="messages",
        cpu_target=2.5,
    ),
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
        # Not the peers: at their CPU per stream here (LiteLLM 40-80 ms, Portkey 2-8 ms) 5,000 streams outlast the
        # row's timeout, and their backlog would then load the machine under the rows that follow.
        (DIRECT, FLOOR_BARE, GATEWAY),
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
# Names --only / --scenarios accepts besides scenario names and globs.
GROUPS: dict[str, tuple[str, ...]] = {
    "all": tuple(BY_NAME),
    "streams": tuple(s.name for s in SCENARIOS if s.stream and s.load == "rate"),
    "ratios": tuple(s.name for s in SCENARIOS if s.cpu_target is not None),
    "apis": tuple(s.name for s in SCENARIOS if s.api != "chat"),
}


def select(spec: str) -> list[str]:
    """Scenario names from a comma-separated list of names, globs (``*-32``) and groups (``streams``)."""
    out: list[str] = []
    for item in (x.strip() for x in spec.split(",")):
        if not item:
            continue
        names = GROUPS.get(item) or tuple(n for n in BY_NAME if fnmatch.fnmatchcase(n, item))
        if not names:
            raise ValueError(item)
        out += [n for n in names if n not in out]
    return sorted(out, key=list(BY_NAME).index)  # the table's order, whatever the order asked


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


def api_body(sc: Scenario, api: str, model: str) -> dict[str, object]:
    """The request body of one API; for the upstream side of a translation, what the gateway sends there."""
    content = prose(sc.prompt_words) if sc.prompt_words else PROMPT
    messages = [{"role": "user", "content": content}]
    req: dict[str, object]
    if api == "chat":
        req = {"model": model, "messages": messages}
        if sc.translated:  # as the Messages translation sends it: the client's budget, usage asked for
            req["max_tokens"] = MAX_TOKENS
    elif api == "completions":
        req = {"model": model, "prompt": content, "max_tokens": 32}
    elif api == "embeddings":
        req = {"model": model, "input": content}
    elif api == "responses":
        # store: false, as Codex sends it: the bench measures relaying, not a growing store.
        req = {"model": model, "input": content, "max_output_tokens": MAX_TOKENS, "store": False}
    else:
        req = {"model": model, "max_tokens": MAX_TOKENS, "messages": messages}
    if sc.stream:
        req["stream"] = True
        if api == "chat" and sc.translated:
            req["stream_options"] = {"include_usage": True}
    if sc.prompt_words:
        req["max_tokens"] = 16
    return req


def body(scenario: Scenario, target: str) -> bytes:
    return orjson.dumps(api_body(scenario, scenario.api_for(target), scenario.model(target)))


def request(scenario: Scenario, target: str, key: str, extra: tuple[tuple[str, str], ...] = ()) -> Request:
    """Path, body and headers for one target; ``extra``: headers a peer needs (Portkey's routing)."""
    api = APIS[scenario.api_for(target)]
    headers = [(api.key_header, key if api.key_header == "x-api-key" else f"Bearer {key}")]
    if api.name == "messages":
        headers.append(("anthropic-version", ANTHROPIC_VERSION))
    end = (api.end or None) if scenario.stream else None
    return Request(api.path, body(scenario, target), (*headers, *extra), end)


def body_file(directory: Path, data: bytes) -> Path:
    """A request body on disk (wrk and the Python load generator read it), written once per content."""
    path = directory / f"body-{hashlib.sha1(data).hexdigest()[:16]}.json"
    if not path.exists():
        path.write_bytes(data)
    return path
