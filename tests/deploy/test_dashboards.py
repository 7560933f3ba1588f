"""The Grafana dashboard and the alert rules query only what the gateway exports, in valid PromQL.

Every ``switchyard_*`` name a panel, a template variable or a rule queries must be one of the
contract's series (histograms through ``_bucket``/``_sum``/``_count``). ``promtool check rules``
validates the rule file and, as recording rules, every dashboard query (Grafana's variables
replaced by plain values); it runs when promtool is installed and is skipped otherwise.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.accounting.metrics import EXPORTED
from tests.support import ROOT

DASHBOARD = ROOT / "deploy" / "grafana" / "switchyard.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"

HISTOGRAMS = {"switchyard_request_duration_seconds", "switchyard_time_to_first_token_seconds"}
QUERYABLE = (EXPORTED - HISTOGRAMS) | {f"{h}{s}" for h in HISTOGRAMS for s in ("_bucket", "_sum", "_count")}
NAME = re.compile(r"\bswitchyard_[a-zA-Z0-9_]+")


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def alert_rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"] for r in g["rules"]]


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for p in items:
        yield p
        yield from panels(p.get("panels", []))  # rows may nest their panels


def panel_queries() -> list[str]:
    return [t["expr"] for p in panels(dashboard()["panels"]) for t in p.get("targets", []) if t.get("expr")]


def variable_queries() -> list[str]:
    out = []
    for v in dashboard()["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]
            out.append(q["query"] if isinstance(q, dict) else q)
    return out


def grafana_to_promql(expr: str) -> str:
    """A panel query as plain PromQL: Grafana's interval macros and variables as fixed values."""
    expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m").replace("$__range", "1h")
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def test_dashboard_is_importable_and_covers_the_brief() -> None:
    d = dashboard()
    assert d["uid"] == "switchyard" and d["title"] and "id" not in d
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource" and variables["DS_PROMETHEUS"]["query"] == "prometheus"
    ids = [p["id"] for p in panels(d["panels"])]
    assert len(ids) == len(set(ids))
    for p in panels(d["panels"]):
        if p["type"] != "row":
            assert p["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, p["title"]
            assert p["targets"], p["title"]
    text = " ".join(panel_queries())
    for needed in (
        "sum by (model) (rate(switchyard_requests_total",  # request rate by model
        'status=~"5.."',  # error rates
        "sum by (key, model, kind) (rate(switchyard_tokens_total",  # tokens/s by key and model
        "histogram_quantile(0.99, sum by (le) (rate(switchyard_request_duration_seconds_bucket",
        "histogram_quantile(0.5, sum by (le) (rate(switchyard_time_to_first_token_seconds_bucket",
        "switchyard_in_flight_requests",
        "switchyard_usage_buffered_records",
        "switchyard_usage_dropped_records_total",
    ):
        assert needed in text, needed


@pytest.mark.parametrize("source", ["dashboard panels", "dashboard variables", "alert rules"])
def test_every_queried_metric_is_exported(source: str) -> None:
    exprs = {
        "dashboard panels": panel_queries,
        "dashboard variables": variable_queries,
        "alert rules": lambda: [str(r["expr"]) for r in alert_rules()],
    }[source]()
    assert exprs
    names = {n for e in exprs for n in NAME.findall(e)}
    assert names, f"{source} query no switchyard_ metric"
    assert names <= QUERYABLE, f"{source} query series the gateway does not export: {sorted(names - QUERYABLE)}"


def test_histogram_quantiles_keep_the_le_label() -> None:
    for expr in panel_queries() + [str(r["expr"]) for r in alert_rules()]:
        if "histogram_quantile" in expr:
            assert re.search(r"by \(le\b", expr) and "_bucket" in expr, expr


def test_alert_rules_cover_the_brief() -> None:
    rules = {r["alert"]: r for r in alert_rules()}
    assert set(rules) >= {
        "SwitchyardHighErrorRatio",
        "SwitchyardUpstreamErrors",
        "SwitchyardUsageRecordsDropped",
        "SwitchyardUsageBufferGrowing",
        "SwitchyardHighLatencyP99",
    }
    for name, r in rules.items():
        assert r["labels"]["severity"] in ("critical", "warning"), name
        assert r["annotations"]["summary"] and r["annotations"]["description"], name


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_rules_and_every_dashboard_query(tmp_path: Path) -> None:
    checked = subprocess.run(["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    as_rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": grafana_to_promql(e)}
                    for i, e in enumerate(panel_queries())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard_rules.yaml"
    path.write_text(yaml.safe_dump(as_rules), encoding="utf-8")
    checked = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
