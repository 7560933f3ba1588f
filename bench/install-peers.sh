#!/bin/sh
# Installs the benchmark's optional peers into bench/.peers/ (ignored by git), where `python -m bench` finds them:
#   litellm: LiteLLM's proxy, `litellm[proxy]` from PyPI, in a venv of its own (its pins stay out of the project's);
#   portkey: Portkey's gateway from npm, with hono and @hono/node-server pinned through npm `overrides`: with the
#            versions npm resolves by itself, @portkey-ai/gateway 1.15.2 answers every stream with a 500.
# Usage: bench/install-peers.sh [litellm] [portkey]        (both by default)
# Versions: LITELLM_VERSION (default: the latest), PORTKEY_VERSION (default 1.15.2); PYTHON (default python3).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dest="$here/.peers"
mkdir -p "$dest"
for peer in ${*:-litellm portkey}; do
  case "$peer" in
    litellm)
      "${PYTHON:-python3}" -m venv "$dest/litellm"
      "$dest/litellm/bin/pip" install --quiet "litellm[proxy]${LITELLM_VERSION:+==$LITELLM_VERSION}"
      echo "litellm: $dest/litellm/bin/litellm"
      ;;
    portkey)
      command -v npm >/dev/null || { echo "portkey: needs node and npm" >&2; exit 1; }
      mkdir -p "$dest/portkey"
      cat > "$dest/portkey/package.json" <<JSON
{
  "name": "sybench-portkey",
  "private": true,
  "dependencies": {"@portkey-ai/gateway": "${PORTKEY_VERSION:-1.15.2}"},
  "overrides": {"hono": "4.9.7", "@hono/node-server": "1.13.5"}
}
JSON
      (cd "$dest/portkey" && npm install --no-audit --no-fund --loglevel=error)
      echo "portkey: $dest/portkey/node_modules/.bin/gateway"
      ;;
    *) echo "unknown peer: $peer (litellm, portkey)" >&2; exit 2 ;;
  esac
done
