"""Spend on the Grafana dashboard and in the alert rules (issue 16): per key, per model, budget use,
unpriced requests, and a "budget 80% used" alert that ignores windows already over."""

from __future__ import annotations

from tests.deploy.test_dashboards import alert_rules, panel_queries


def test_the_dashboard_shows_spend_per_key_and_model_and_budget_use() -> None:
    text = " ".join(panel_queries())
    for needed in (
        "sum by (key) (rate(switchyard_cost_usd_total",
        "sum by (vendor, model) (rate(switchyard_cost_usd_total",
        "switchyard_budget_spent_usd / on (subject, window) group_left",
        "switchyard_budget_reset_timestamp_seconds > time()",
        "switchyard_unpriced_requests_total",
    ):
        assert needed in text, needed


def test_a_budget_80_percent_used_alert() -> None:
    rules = {r["alert"]: r for r in alert_rules()}
    rule = rules["SwitchyardBudget80PercentUsed"]
    expr = " ".join(str(rule["expr"]).split())
    assert "switchyard_budget_spent_usd" in expr and "switchyard_budget_limit_usd" in expr
    assert expr.endswith("> 0.8")
    assert "(switchyard_budget_reset_timestamp_seconds > time())" in expr  # a past window never alerts
    assert "SwitchyardUnpricedRequests" in rules
