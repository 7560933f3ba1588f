"""Other gateways in the same run, when installed: LiteLLM's proxy (PyPI) and Portkey's gateway (npm).

Neither is required: each is looked for (an explicit path, then ``bench/.peers/`` as
``bench/install-peers.sh`` lays it out, then the PATH or this interpreter), and a run without one
says how to install it. Both are pointed at the same simulated upstreams as the gateway:

- LiteLLM: ``litellm --config <generated> --host 127.0.0.1 --port N --num_workers 1``, one model entry
  per name the scenarios send (``fast/gpt-4o-mini`` -> ``openai/gpt-4o-mini`` at the fast upstream,
  ``anthropic/claude-sonnet-4-5`` -> ``anthropic/...`` at the Anthropic one), the bench key as its
  master key, no database, no cache, its defaults otherwise;
- Portkey: ``gateway --port=N --headless`` (the package's bin), addressed per request with
  ``x-portkey-provider`` and ``x-portkey-custom-host`` and the upstream's own key, the model named as
  the upstream knows it. It has no translation between the Messages or Responses API and another
  dialect, so the translated scenarios skip it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.bare_proxy import UPSTREAM_KEY
from bench.scenarios import ANTHROPIC_VENDORS, SCENARIOS, Scenario

HERE = Path(__file__).resolve().parent
PEERS_DIR = HERE / ".peers"  # where install-peers.sh puts them (ignored by git)
LITELLM_HELP = "`bench/install-peers.sh litellm` (or `pip install 'litellm[proxy]'`)"
PORTKEY_HELP = "`bench/install-peers.sh portkey` (needs node and npm)"


@dataclass(frozen=True)
class Found:
    argv: list[str]  # the command that starts it, before the port arguments
    where: str  # for the notes


def find_litellm(explicit: str | None = None) -> Found | None:
    """An explicit command, bench/.peers/litellm, a ``litellm`` on the PATH, or LiteLLM in this interpreter."""
    explicit = explicit or os.environ.get("SYBENCH_LITELLM")
    if explicit:
        return Found([explicit], explicit)
    local = PEERS_DIR / "litellm" / "bin" / "litellm"
    if local.exists():
        return Found([str(local)], str(local.relative_to(HERE.parent)))
    on_path = shutil.which("litellm")
    if on_path:
        return Found([on_path], on_path)
    if importlib.util.find_spec("litellm") is not None:
        return Found([sys.executable, "-c", "import sys; from litellm import run_server; sys.exit(run_server())"], "")
    return None


def find_portkey(explicit: str | None = None) -> Found | None:
    """An explicit command, bench/.peers/portkey, or a ``gateway`` on the PATH that is Portkey's; node needed."""
    if shutil.which("node") is None:
        return None
    explicit = explicit or os.environ.get("SYBENCH_PORTKEY")
    if explicit:
        return Found([explicit], explicit)
    local = PEERS_DIR / "portkey" / "node_modules" / ".bin" / "gateway"
    if local.exists():
        return Found([str(local)], str(local.relative_to(HERE.parent)))
    on_path = shutil.which("gateway")
    if on_path and "@portkey-ai" in os.path.realpath(on_path):
        return Found([on_path], on_path)
    return None


def version(found: Found, peer: str) -> str:
    """The installed version, read from the package metadata next to the command (best effort)."""
    if peer == "portkey":
        pkg = Path(os.path.realpath(found.argv[0])).parent.parent / "package.json"
        try:
            import json

            return json.loads(pkg.read_text())["version"]
        except (OSError, ValueError, KeyError):
            return "?"
    bin_dir = Path(found.argv[0]).parent
    for site in bin_dir.parent.glob("lib/python*/site-packages"):
        for meta in site.glob("litellm-*.dist-info"):
            return meta.name.removeprefix("litellm-").removesuffix(".dist-info")
    try:
        from importlib.metadata import version as meta_version

        return meta_version("litellm")
    except Exception:  # not importable here: the explicit command's own
        return "?"


def litellm_config(urls: dict[str, str], anthropic_origin: str, key: str) -> str:
    """LiteLLM's proxy config: every model name the scenarios send, at the bench's simulated upstreams."""
    entries: dict[str, tuple[str, str]] = {}
    for sc in SCENARIOS:
        for api in {sc.api, sc.floor_api}:
            name = sc.upstream_model(api)
            if sc.vendor in ANTHROPIC_VENDORS:
                entries[f"{sc.vendor}/{name}"] = (f"anthropic/{name}", anthropic_origin)
            elif sc.vendor in urls:
                kind = "text-completion-openai" if api == "completions" else "openai"
                entries[f"{sc.vendor}/{name}"] = (f"{kind}/{name}", urls[sc.vendor])
    lines = ["model_list:"]
    for name, (model, base) in sorted(entries.items()):
        lines += [
            f"  - model_name: {name}",
            f'    litellm_params: {{model: {model}, api_base: "{base}", api_key: {UPSTREAM_KEY}}}',
        ]
    lines += ["general_settings:", f"  master_key: {key}", "litellm_settings:", "  telemetry: false", ""]
    return "\n".join(lines)


LITELLM_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch of the cost map at start-up (no network here)
    "LITELLM_LOG": "ERROR",
    "LITELLM_MODE": "PRODUCTION",
}


def portkey_headers(sc: Scenario, upstream_url: str) -> tuple[tuple[str, str], ...]:
    provider = "anthropic" if sc.vendor in ANTHROPIC_VENDORS else "openai"
    return (("x-portkey-provider", provider), ("x-portkey-custom-host", upstream_url))


def unsupported(peer: str, sc: Scenario) -> str | None:
    """Why a peer cannot serve a scenario at all (then its row is skipped with that note), or None."""
    if peer == "portkey" and sc.translated:
        src, dst = sc.api, "Anthropic" if sc.vendor in ANTHROPIC_VENDORS else "OpenAI"
        return f"not supported: Portkey does not translate the {src.capitalize()} API to an {dst} upstream"
    return None
