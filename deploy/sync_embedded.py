"""Regenerate the Kubernetes manifests that embed another file of deploy/, so they never drift.

    python deploy/sync_embedded.py           # rewrite the generated manifests
    python deploy/sync_embedded.py --check   # exit 1 if any is stale (what tests/test_deploy.py asserts)

The PrometheusRule is deploy/prometheus/alerts.yaml (a Prometheus rule file) indented under ``spec:``,
text for text, so its comments and formatting survive. The Grafana dashboard needs no copy: kustomize
generates its ConfigMap from deploy/grafana/switchyard.json (deploy/grafana/kustomization.yaml).
"""

from __future__ import annotations

import sys
from pathlib import Path

DEPLOY = Path(__file__).resolve().parent
ALERTS = DEPLOY / "prometheus" / "alerts.yaml"
PROMETHEUS_RULE = DEPLOY / "kubernetes" / "prometheusrule.yaml"

_RULE_HEADER = """\
# GENERATED from deploy/prometheus/alerts.yaml by `python deploy/sync_embedded.py`: edit that file, then rerun.
# Needs the Prometheus Operator; if your Prometheus selects rules by label (ruleSelector, often
# `release: <helm release>`), add that label here through a kustomize overlay.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: switchyard
  labels:
    app.kubernetes.io/name: switchyard
    app.kubernetes.io/part-of: switchyard
spec:
"""


def render_prometheus_rule(alerts_text: str) -> str:
    """The PrometheusRule manifest whose ``spec`` is the rule file ``alerts_text``."""
    lines = alerts_text.splitlines()
    if any(line.rstrip() in ("---", "...") for line in lines):
        # A document marker would end the manifest in the middle of the spec.
        raise ValueError(f"{ALERTS}: a rule file must be a single YAML document")
    body = "".join(f"  {line}\n" if line.strip() else "\n" for line in lines)
    return _RULE_HEADER + body


def targets() -> dict[Path, str]:
    """Each generated file and the text it must hold."""
    return {PROMETHEUS_RULE: render_prometheus_rule(ALERTS.read_text(encoding="utf-8"))}


def main(argv: list[str]) -> int:
    stale = [path for path, text in targets().items() if not path.exists() or path.read_text("utf-8") != text]
    if "--check" in argv:
        for path in stale:
            print(f"{path.relative_to(DEPLOY.parent)} is stale: run python deploy/sync_embedded.py", file=sys.stderr)
        return 1 if stale else 0
    for path, text in targets().items():
        if path in stale:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(DEPLOY.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
