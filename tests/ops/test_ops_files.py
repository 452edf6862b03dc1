"""The ops view in ops/: the Prometheus alert rules pass ``promtool check rules`` and their unit tests
(``promtool test rules``), the Grafana dashboard loads and its queries are valid PromQL, and every metric name
either uses is one the running service exports at /metrics (the real app over HTTP)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.recommender.served_app import CANDIDATES_20, ServedApp, service_document, write_config

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "ops" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "ops" / "prometheus" / "alerts.test.yml"
DASHBOARD = ROOT / "ops" / "grafana" / "recommender.json"
# Series Prometheus itself records for every scrape, not the service.
PROMETHEUS_SERIES = {"up"}
# Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"job", "instance"}


def promtool() -> str:
    """The promtool binary: ``$PROMTOOL``; the one ``make test`` puts beside this Python (``ops/get-promtool``);
    ``promtool`` on PATH; else fetched now with ``ops/get-promtool``. Missing, the test fails."""
    beside = Path(sys.prefix) / "bin" / "promtool"
    for candidate in (os.environ.get("PROMTOOL"), str(beside) if beside.exists() else None, shutil.which("promtool")):
        if candidate:
            return candidate
    fetched = subprocess.run(["bash", str(ROOT / "ops" / "get-promtool"), str(beside)], capture_output=True, text=True)
    if fetched.returncode == 0:
        return str(beside)
    # Never skipped: a rules file promtool has not checked is not known to load.
    pytest.fail(f"no promtool (set PROMTOOL, or run ops/get-promtool): {fetched.stderr.strip()}")


def run_promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120)


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def dashboard_panels() -> list[dict]:
    return [panel for panel in json.loads(DASHBOARD.read_text())["panels"] if panel["type"] != "row"]


def dashboard_queries() -> list[str]:
    """The dashboard's PromQL with its variables given values, as Grafana sends it."""
    return [
        target["expr"].replace("$__rate_interval", "5m").replace("$job", "recommender")
        for panel in dashboard_panels()
        for target in panel["targets"]
    ]


def all_queries() -> list[str]:
    return [rule["expr"] for rule in alert_rules()] + dashboard_queries()


def test_alert_rules_pass_promtool_check():
    result = run_promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_alerts_fire_when_they_should_and_only_then():
    result = run_promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_documented_and_unit_tested():
    names = {rule["alert"] for rule in alert_rules()}
    operations = (ROOT / "docs" / "operations.md").read_text()
    assert {name for name in names if f"`{name}`" not in operations} == set()
    tested = {case["alertname"] for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
              for case in test["alert_rule_test"]}  # fmt: skip
    assert len(tested) >= 10 and tested <= names


def test_dashboard_queries_are_valid_promql(tmp_path):
    # promtool parses every expression of a rule file: the dashboard's queries as recording rules.
    rules = [{"record": f"dashboard:query_{i}", "expr": expr} for i, expr in enumerate(dashboard_queries())]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run_promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_loads_as_grafana_dashboard_json():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] and dashboard["uid"] and isinstance(dashboard["schemaVersion"], int)
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    occupied: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        columns, rows = range(grid["x"], grid["x"] + grid["w"]), range(grid["y"], grid["y"] + grid["h"])
        cells = {(x, y) for x in columns for y in rows}
        assert not cells & occupied, f"{panel['title']} overlaps another panel"
        occupied |= cells
    panels = dashboard_panels()
    assert len(panels) >= 20
    for panel in panels:
        assert panel["title"] and panel["description"], panel
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"] and all(target["expr"] and target["refId"] for target in panel["targets"])


@pytest.fixture(scope="module")
def exposition(tmp_path_factory) -> Iterator[str]:
    """The /metrics text of the real app after a decision and a reward (so labelled metrics have samples)."""
    tmp_path = tmp_path_factory.mktemp("ops-metrics")
    config = write_config(tmp_path / "config.yaml", service_document(tmp_path, None))
    served = ServedApp(config)
    try:
        client = served.client()
        event_id = client.post("/v1/score", {"candidates": CANDIDATES_20}).json()["event_id"]
        assert client.post("/v1/reward", {"event_id": event_id, "reward": 1.0}).status == 204
        response = client.get("/metrics")
        assert response.status == 200
        yield response.body.decode()
    finally:
        served.stop()


def exported_names(exposition: str) -> dict[str, set[str]]:
    """Series name -> the label names its samples carry, from /metrics (histograms' _bucket, _sum, _count
    included; a metric without samples yet, from its TYPE line, with no labels)."""
    names: dict[str, set[str]] = {}
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            for suffix in ("_bucket", "_sum", "_count") if kind == "histogram" else ("",):
                names.setdefault(name + suffix, set())
        elif line and not line.startswith("#"):
            name, _, rest = line.partition("{")
            labels = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', rest.split("}")[0])) if rest else set()
            names.setdefault(name.split(" ")[0], set()).update(labels)
    return names


# A series selector: a name, then its label matchers and/or a range: name{a="b"}[5m], or a bare name.
SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?\s*(\[[^\]]*\])?")
# The PromQL functions, aggregations and keywords the queries use (anything else there is a series name).
PROMQL_WORDS = {"sum", "max", "min", "avg", "count", "rate", "increase", "deriv", "histogram_quantile", "by", "on",
                "unless", "and", "or", "max_over_time", "e6"}  # fmt: skip


def used_series() -> dict[str, set[str]]:
    """Series name -> label names matched on, over every alert rule and dashboard query."""
    used: dict[str, set[str]] = {}
    for query in all_queries():
        # Quoted label values and the label lists of by/on (...) are no series names.
        query = re.sub(r"\b(by|on)\s*\([^)]*\)", r"\1", re.sub(r'"[^"]*"', '""', query))
        for name, matchers, _ in SELECTOR.findall(query):
            if name in PROMQL_WORDS or name[0].isdigit():
                continue
            used.setdefault(name, set()).update(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*[=!]~?", matchers))
    return used


def test_every_metric_in_the_rules_and_dashboard_is_exported(exposition):
    exported = exported_names(exposition)
    used = used_series()
    assert len(used) >= 25  # the parser found the queries' series
    unknown = {name for name in used if name not in exported and name not in PROMETHEUS_SERIES}
    assert unknown == set(), f"not in /metrics: {sorted(unknown)}"
    # Labels matched on are the metric's own (for the metrics with samples by now) or Prometheus's.
    for name, labels in used.items():
        if exported.get(name):
            assert labels - TARGET_LABELS <= exported[name], (name, labels - TARGET_LABELS - exported[name])


def test_endpoint_labels_in_the_queries_are_the_services(exposition):
    endpoints = set(re.findall(r'endpoint="([^"]+)"', exposition))
    assert "scoring.score" in endpoints and "rewards.reward" in endpoints
    for query in all_queries():
        for endpoint in re.findall(r'endpoint="([^"]+)"', query):
            assert endpoint in endpoints, query
