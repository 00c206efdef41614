#!/usr/bin/env python3
"""Generates the Grafana dashboards in dashboards/*.json.

The JSON files are the product (import them as they are); this script only keeps their boilerplate consistent.
Edit it, run `python3 scripts/dashboards.py`, commit both. `tests/prometheus.rs` runs every panel query against a
real Prometheus, so a query that is invalid or matches nothing fails the test suite.

Conventions every panel follows:
- the data source is the `$datasource` variable; no instance, job or host is hard-coded;
- `$team` and `$model` are multi-value variables with an "All" of `.*`, so filters are regex matches (`=~`);
- rates use `$__rate_interval`, totals over the picked time range use `$__range`;
- every panel sets a unit and a legend.
"""

import json
import os

DS = {"type": "prometheus", "uid": "${datasource}"}
TEAM = 'team=~"$team"'
TEAM_MODEL = 'team=~"$team", model=~"$model"'


def variables():
    def query_var(name, label, query):
        return {
            "name": name,
            "label": label,
            "type": "query",
            "datasource": DS,
            "query": query,
            "definition": query,
            "refresh": 2,
            "includeAll": True,
            "multi": True,
            "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "options": [],
            "sort": 1,
            "hide": 0,
            "regex": "",
        }

    return [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "options": [],
            "refresh": 1,
            "regex": "",
            "hide": 0,
        },
        query_var("team", "Team", "label_values(switchyard_requests_total, team)"),
        query_var("model", "Model", 'label_values(switchyard_requests_total{team=~"$team"}, model)'),
    ]


class Dashboard:
    def __init__(self, uid, title, description, time_from):
        self.uid = uid
        self.title = title
        self.description = description
        self.time_from = time_from
        self.panels = []
        self.x = 0
        self.y = 0
        self.row_h = 0

    def _place(self, w, h):
        if self.x + w > 24:
            self.x = 0
            self.y += self.row_h
            self.row_h = 0
        pos = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos

    def row(self, title):
        if self.x:
            self.x = 0
            self.y += self.row_h
            self.row_h = 0
        self.panels.append(
            {
                "id": len(self.panels) + 1,
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"x": 0, "y": self.y, "w": 24, "h": 1},
                "panels": [],
            }
        )
        self.y += 1

    def panel(self, kind, title, description, targets, unit, w=12, h=8, **extra):
        """targets: list of (expr, legend) or (expr, legend, options)."""
        instant = kind in ("stat", "bargauge", "piechart")
        tlist = []
        for i, t in enumerate(targets):
            expr, legend = t[0], t[1]
            opts = t[2] if len(t) > 2 else {}
            tlist.append(
                {
                    "refId": chr(ord("A") + i),
                    "datasource": DS,
                    "expr": expr,
                    "legendFormat": legend,
                    "range": not instant,
                    "instant": instant,
                    "editorMode": "code",
                    **opts,
                }
            )
        defaults = {"unit": unit, **extra.pop("defaults", {})}
        p = {
            "id": len(self.panels) + 1,
            "type": kind,
            "title": title,
            "description": description,
            "datasource": DS,
            "gridPos": self._place(w, h),
            "targets": tlist,
            "fieldConfig": {"defaults": defaults, "overrides": extra.pop("overrides", [])},
            "options": extra.pop("options", {}),
        }
        p.update(extra)
        self.panels.append(p)

    def timeseries(self, title, description, targets, unit, stack=False, w=12, h=8, legend_calcs=None, **extra):
        custom = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never", "spanNulls": False}
        if stack:
            custom.update({"stacking": {"mode": "normal", "group": "A"}, "fillOpacity": 60})
        custom.update(extra.pop("custom", {}))
        defaults = {"custom": custom, **extra.pop("defaults", {})}
        options = {
            "legend": {
                "showLegend": True,
                "displayMode": "table",
                "placement": "right" if w >= 12 else "bottom",
                "calcs": legend_calcs if legend_calcs is not None else ["mean", "max"],
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
        self.panel("timeseries", title, description, targets, unit, w, h, defaults=defaults, options=options, **extra)

    def stat(self, title, description, expr, unit, w=6, h=4, decimals=None, thresholds=None):
        defaults = {"color": {"mode": "thresholds"}}
        if decimals is not None:
            defaults["decimals"] = decimals
        defaults["thresholds"] = thresholds or {"mode": "absolute", "steps": [{"color": "blue", "value": None}]}
        options = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "none",
            "justifyMode": "auto",
            "textMode": "value",
            "orientation": "auto",
        }
        self.panel("stat", title, description, [(expr, "")], unit, w, h, defaults=defaults, options=options)

    def bargauge(self, title, description, targets, unit, w=12, h=8, thresholds=None, max_=None):
        defaults = {"color": {"mode": "thresholds" if thresholds else "palette-classic"}, "min": 0}
        if max_ is not None:
            defaults["max"] = max_
        if thresholds:
            defaults["thresholds"] = thresholds
        options = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "displayMode": "gradient",
            "orientation": "horizontal",
            "showUnfilled": True,
            "valueMode": "color",
        }
        self.panel("bargauge", title, description, targets, unit, w, h, defaults=defaults, options=options)

    def to_json(self):
        return {
            "__requires": [
                {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.0.0"},
                {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
            ],
            "annotations": {
                "list": [
                    {
                        "builtIn": 1,
                        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                        "enable": True,
                        "hide": True,
                        "iconColor": "rgba(0, 211, 255, 1)",
                        "name": "Annotations & Alerts",
                        "type": "dashboard",
                    }
                ]
            },
            "description": self.description,
            "editable": True,
            "graphTooltip": 1,
            "id": None,
            "links": [
                {
                    "type": "dashboards",
                    "tags": ["switchyard"],
                    "asDropdown": False,
                    "title": "Switchyard",
                    "includeVars": True,
                    "keepTime": True,
                }
            ],
            "panels": self.panels,
            "refresh": "1m",
            "schemaVersion": 39,
            "tags": ["switchyard", "llm", "genai"],
            "templating": {"list": variables()},
            "time": {"from": self.time_from, "to": "now"},
            "timepicker": {},
            "timezone": "",
            "title": self.title,
            "uid": self.uid,
            "version": 1,
            "weekStart": "",
        }


PCT_THRESHOLDS = {
    "mode": "absolute",
    "steps": [{"color": "green", "value": None}, {"color": "orange", "value": 0.8}, {"color": "red", "value": 1}],
}


def cost_and_savings():
    d = Dashboard(
        "switchyard-cost",
        "Switchyard / Cost and savings",
        "Spend by team and model, savings against each team's baseline (premium) model, budget burn.",
        "now-7d",
    )
    cost = f"switchyard_cost_usd_total{{{TEAM_MODEL}}}"
    d.row("Totals for the selected time range")
    d.stat(
        "Spend",
        "Total spend in the selected range, for the selected teams and models.",
        f"sum(increase({cost}[$__range]))",
        "currencyUSD",
        decimals=2,
    )
    d.stat(
        "Net savings",
        "Baseline cost minus actual cost: what always using each team's baseline model would have cost more.",
        f'sum(increase(switchyard_savings_usd_total{{{TEAM}}}[$__range]))'
        f' - sum(increase(switchyard_overspend_usd_total{{{TEAM}}}[$__range]))',
        "currencyUSD",
        decimals=2,
        thresholds={"mode": "absolute", "steps": [{"color": "red", "value": None}, {"color": "green", "value": 0}]},
    )
    d.stat(
        "Savings rate",
        "Share of the baseline cost saved by routing (1 - actual / baseline).",
        f'1 - sum(increase(switchyard_cost_usd_total{{{TEAM}}}[$__range]))'
        f' / sum(increase(switchyard_baseline_cost_usd_total{{{TEAM}}}[$__range]))',
        "percentunit",
        decimals=1,
    )
    d.stat(
        "Cost per request",
        "Average spend per finished request in the selected range.",
        f"sum(increase({cost}[$__range])) / sum(increase(switchyard_requests_total{{{TEAM_MODEL}}}[$__range]))",
        "currencyUSD",
        decimals=5,
    )
    d.row("Spend")
    d.timeseries(
        "Spend rate by team and model",
        "USD per hour, by team and model.",
        [(f"sum by (team, model) (rate({cost}[$__rate_interval])) * 3600", "{{team}} / {{model}}")],
        "currencyUSD",
        stack=True,
        legend_calcs=["mean", "sum"],
    )
    d.timeseries(
        "Spend per day by team",
        "USD per calendar-day-sized interval, by team.",
        [(f"sum by (team) (increase({cost}[$__interval]))", "{{team}}")],
        "currencyUSD",
        stack=True,
        legend_calcs=["sum"],
        interval="1d",
        custom={"drawStyle": "bars", "fillOpacity": 80},
    )
    d.bargauge(
        "Top models by spend",
        "The ten models with the highest spend in the selected range.",
        [(f"topk(10, sum by (model) (increase({cost}[$__range])))", "{{model}}")],
        "currencyUSD",
    )
    d.timeseries(
        "Cost per request by model",
        "Average USD per request, by model.",
        [
            (
                f"sum by (model) (rate({cost}[$__rate_interval]))"
                f" / sum by (model) (rate(switchyard_requests_total{{{TEAM_MODEL}}}[$__rate_interval]))",
                "{{model}}",
            )
        ],
        "currencyUSD",
    )
    d.row("Savings")
    d.timeseries(
        "Net savings rate by team",
        "USD per hour saved against each team's baseline model (negative: named models dearer than the baseline).",
        [
            (
                f"(sum by (team) (rate(switchyard_savings_usd_total{{{TEAM}}}[$__rate_interval]))"
                f" - sum by (team) (rate(switchyard_overspend_usd_total{{{TEAM}}}[$__rate_interval]))) * 3600",
                "{{team}}",
            )
        ],
        "currencyUSD",
        legend_calcs=["mean", "sum"],
    )
    d.timeseries(
        "Actual vs baseline spend",
        "USD per hour actually spent, and what the same requests would have cost on the baseline model.",
        [
            (f"sum(rate(switchyard_cost_usd_total{{{TEAM}}}[$__rate_interval])) * 3600", "actual"),
            (f"sum(rate(switchyard_baseline_cost_usd_total{{{TEAM}}}[$__rate_interval])) * 3600", "baseline"),
        ],
        "currencyUSD",
        legend_calcs=["mean", "sum"],
    )
    d.row("Budgets")
    d.timeseries(
        "Budget used by team",
        "Share of each team's current budget window spent or reserved. Orange at 80%, red at 100%.",
        [(f"max by (team) (switchyard_budget_used_ratio{{{TEAM}}})", "{{team}}")],
        "percentunit",
        legend_calcs=["lastNotNull", "max"],
        defaults={"min": 0, "thresholds": PCT_THRESHOLDS},
        custom={"thresholdsStyle": {"mode": "line+area"}},
    )
    d.bargauge(
        "Budget used now",
        "Latest budget used ratio per team.",
        [(f"max by (team) (switchyard_budget_used_ratio{{{TEAM}}})", "{{team}}")],
        "percentunit",
        thresholds=PCT_THRESHOLDS,
        max_=1,
    )
    d.row("Tokens")
    d.timeseries(
        "Tokens by team and type",
        "Tokens per second by team and token type (cached_input is part of input).",
        [(f"sum by (team, type) (rate(switchyard_tokens_total{{{TEAM_MODEL}}}[$__rate_interval]))", "{{team}} {{type}}")],
        "short",
        w=24,
    )
    return d


def routing():
    d = Dashboard(
        "switchyard-routing",
        "Switchyard / Routing",
        "Which models requests are routed to and why, the difficulty and task mix the classifier sees, fallbacks.",
        "now-24h",
    )
    decisions = f"switchyard_route_decisions_total{{{TEAM_MODEL}}}"
    d.row("Route mix")
    d.timeseries(
        "Requests by chosen model",
        "Routing decisions per second by the model chosen.",
        [(f"sum by (model) (rate({decisions}[$__rate_interval]))", "{{model}}")],
        "reqps",
        stack=True,
    )
    d.panel(
        "piechart",
        "Model share",
        "Share of routing decisions per model in the selected range.",
        [(f"sum by (model) (increase({decisions}[$__range]))", "{{model}}")],
        "short",
        w=6,
        options={
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "pieType": "donut",
            "legend": {"showLegend": True, "displayMode": "table", "placement": "right", "values": ["percent"]},
            "tooltip": {"mode": "single"},
        },
    )
    d.panel(
        "piechart",
        "Route reasons",
        "Share of routing decisions per reason in the selected range.",
        [(f"sum by (reason) (increase({decisions}[$__range]))", "{{reason}}")],
        "short",
        w=6,
        options={
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "pieType": "donut",
            "legend": {"showLegend": True, "displayMode": "table", "placement": "right", "values": ["percent"]},
            "tooltip": {"mode": "single"},
        },
    )
    d.timeseries(
        "Route reasons over time",
        "Routing decisions per second by reason (honoured: a named model; cheapest_qualifying: routed; "
        "classifier_unavailable: routed without a difficulty score).",
        [(f"sum by (reason) (rate({decisions}[$__rate_interval]))", "{{reason}}")],
        "reqps",
        stack=True,
    )
    d.timeseries(
        "Fallbacks",
        "Requests moved to the next target after the chosen one failed, per second.",
        [
            (
                f"sum by (from_model, to_model) (rate(switchyard_route_fallbacks_total{{{TEAM}}}[$__rate_interval]))",
                "{{from_model}} → {{to_model}}",
            )
        ],
        "reqps",
    )
    d.row("What the classifier sees")
    d.panel(
        "heatmap",
        "Difficulty distribution",
        "Routed requests per difficulty bucket (0 easy … 1 hard).",
        [
            (
                f"sum by (le) (increase(switchyard_route_difficulty_bucket{{{TEAM}}}[$__rate_interval]))",
                "{{le}}",
                {"format": "heatmap"},
            )
        ],
        "short",
        options={
            "calculate": False,
            "yAxis": {"axisPlacement": "left", "unit": "none"},
            "rowsFrame": {"layout": "auto"},
            "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64, "exponent": 0.5, "fill": "dark-orange"},
            "cellGap": 1,
            "tooltip": {"mode": "single", "yHistogram": True},
            "legend": {"show": True},
        },
    )
    d.timeseries(
        "Task mix",
        "Routed requests per second by classified task type.",
        [(f"sum by (task) (rate(switchyard_route_tasks_total{{{TEAM}}}[$__rate_interval]))", "{{task}}")],
        "reqps",
        stack=True,
    )
    d.timeseries(
        "Median difficulty by team",
        "Estimated median difficulty score of routed requests.",
        [
            (
                "histogram_quantile(0.5, sum by (team, le) "
                f"(rate(switchyard_route_difficulty_bucket{{{TEAM}}}[$__rate_interval])))",
                "{{team}}",
            )
        ],
        "none",
        defaults={"min": 0, "max": 1},
    )
    d.row("Classifier")
    d.timeseries(
        "Classifier latency",
        "Time to score a request's difficulty: p50 and p99 over all outcomes, p99 of computed scores.",
        [
            (
                "histogram_quantile(0.5, sum by (le) (rate(switchyard_classifier_duration_seconds_bucket[$__rate_interval])))",
                "p50",
            ),
            (
                "histogram_quantile(0.99, sum by (le) (rate(switchyard_classifier_duration_seconds_bucket[$__rate_interval])))",
                "p99",
            ),
            (
                "histogram_quantile(0.99, sum by (le) "
                '(rate(switchyard_classifier_duration_seconds_bucket{outcome="computed"}[$__rate_interval])))',
                "p99 computed",
            ),
        ],
        "s",
    )
    d.timeseries(
        "Classifier outcomes",
        "Scores per second by outcome: computed by the model, served from cache, or fallback (classifier "
        "failed or saturated).",
        [("sum by (outcome) (rate(switchyard_classifier_duration_seconds_count[$__rate_interval]))", "{{outcome}}")],
        "reqps",
        stack=True,
    )
    d.timeseries(
        "Local model swaps",
        "Local model loads that swapped another model out of GPU memory (each costs tens of seconds).",
        [("sum by (model) (increase(switchyard_local_model_swaps_total[$__rate_interval]))", "{{model}}")],
        "short",
        w=24,
        custom={"drawStyle": "bars", "fillOpacity": 80},
    )
    return d


def latency_and_health():
    d = Dashboard(
        "switchyard-health",
        "Switchyard / Latency and health",
        "Latency Switchyard adds, time to first token, upstream errors, ledger and policy health.",
        "now-6h",
    )
    d.row("Latency")
    d.timeseries(
        "Proxy overhead",
        "Time spent inside Switchyard per request, upstream excluded (the x-switchyard-overhead-ms header).",
        [
            ("histogram_quantile(0.5, sum by (le) (rate(switchyard_proxy_overhead_seconds_bucket[$__rate_interval])))", "p50"),
            ("histogram_quantile(0.99, sum by (le) (rate(switchyard_proxy_overhead_seconds_bucket[$__rate_interval])))", "p99"),
        ],
        "s",
    )
    d.timeseries(
        "Time to first token (p50 / p99)",
        "Streaming requests: time from the client's request to the first chunk, by model.",
        [
            (
                "histogram_quantile(0.5, sum by (le, gen_ai_response_model) (rate("
                'gen_ai_client_operation_time_to_first_chunk_seconds_bucket{gen_ai_response_model=~"$model"}'
                "[$__rate_interval])))",
                "p50 {{gen_ai_response_model}}",
            ),
            (
                "histogram_quantile(0.99, sum by (le, gen_ai_response_model) (rate("
                'gen_ai_client_operation_time_to_first_chunk_seconds_bucket{gen_ai_response_model=~"$model"}'
                "[$__rate_interval])))",
                "p99 {{gen_ai_response_model}}",
            ),
        ],
        "s",
    )
    d.timeseries(
        "Request duration p99 by model",
        "End-to-end duration as the client saw it (gen_ai.client.operation.duration), by model.",
        [
            (
                "histogram_quantile(0.99, sum by (le, gen_ai_response_model) (rate("
                'gen_ai_client_operation_duration_seconds_bucket{gen_ai_response_model=~"$model"}[$__rate_interval])))',
                "{{gen_ai_response_model}}",
            )
        ],
        "s",
    )
    d.timeseries(
        "Upstream latency p99 by provider",
        "Duration of each upstream attempt, by provider and operation.",
        [
            (
                "histogram_quantile(0.99, sum by (le, provider, operation) "
                "(rate(switchyard_upstream_duration_seconds_bucket[$__rate_interval])))",
                "{{provider}} {{operation}}",
            )
        ],
        "s",
    )
    d.row("Requests and errors")
    d.timeseries(
        "Requests by status",
        "Finished requests per second by status.",
        [(f"sum by (status) (rate(switchyard_requests_total{{{TEAM_MODEL}}}[$__rate_interval]))", "{{status}}")],
        "reqps",
        stack=True,
        overrides=[
            {"matcher": {"id": "byName", "options": "ok"}, "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": "green"}}]},
            {"matcher": {"id": "byName", "options": "failed"}, "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}}]},
        ],
    )
    d.timeseries(
        "Upstream errors by provider",
        "Failed upstream attempts per second by provider and kind.",
        [
            (
                "sum by (provider, kind) (rate(switchyard_upstream_errors_total[$__rate_interval]))",
                "{{provider}} {{kind}}",
            )
        ],
        "reqps",
        stack=True,
    )
    d.timeseries(
        "Upstream error ratio by provider",
        "Failed upstream attempts as a share of all attempts.",
        [
            (
                "sum by (provider) (rate(switchyard_upstream_errors_total[$__rate_interval]))"
                " / sum by (provider) (rate(switchyard_upstream_duration_seconds_count[$__rate_interval]))",
                "{{provider}}",
            )
        ],
        "percentunit",
        defaults={"min": 0},
    )
    d.timeseries(
        "Usage estimated locally",
        "Requests whose token usage Switchyard counted because the provider did not report it.",
        [
            (
                f'sum by (provider) (rate(switchyard_usage_estimated_total{{model=~"$model"}}[$__rate_interval]))'
                f" / sum by (provider) (rate(switchyard_requests_total{{{TEAM_MODEL}}}[$__rate_interval]))",
                "{{provider}}",
            )
        ],
        "percentunit",
        defaults={"min": 0},
    )
    d.row("Ledger and policy")
    d.timeseries(
        "Ledger queue depth",
        "Ledger entries waiting in memory to be written, per instance.",
        [("max by (instance) (switchyard_ledger_queue_depth)", "{{instance}}")],
        "short",
        w=8,
    )
    d.timeseries(
        "Ledger spool size",
        "Ledger entries spooled to disk while the database is unavailable, per instance.",
        [("max by (instance) (switchyard_ledger_spool_bytes)", "{{instance}}")],
        "bytes",
        w=8,
    )
    d.timeseries(
        "Oldest spooled entry",
        "Age of the oldest ledger entry not yet in the database, per instance.",
        [("max by (instance) (switchyard_ledger_spool_oldest_age_seconds)", "{{instance}}")],
        "s",
        w=8,
    )
    d.timeseries(
        "Policy reloads",
        "Policy reloads by result; an error keeps the previous policy live.",
        [("sum by (result) (increase(switchyard_policy_reloads_total[$__rate_interval]))", "{{result}}")],
        "short",
        custom={"drawStyle": "bars", "fillOpacity": 80},
        overrides=[
            {"matcher": {"id": "byName", "options": "error"}, "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}}]},
        ],
    )
    d.stat(
        "Policy reload failures",
        "Failed policy reloads in the selected range.",
        'sum(increase(switchyard_policy_reloads_total{result="error"}[$__range]))',
        "short",
        w=12,
        h=8,
        decimals=0,
        thresholds={"mode": "absolute", "steps": [{"color": "green", "value": None}, {"color": "red", "value": 1}]},
    )
    return d


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "dashboards")
    for name, build in [
        ("cost-and-savings.json", cost_and_savings),
        ("routing.json", routing),
        ("latency-and-health.json", latency_and_health),
    ]:
        with open(os.path.join(out, name), "w", encoding="utf-8") as f:
            json.dump(build().to_json(), f, indent=2, ensure_ascii=False)
            f.write("\n")


if __name__ == "__main__":
    main()
