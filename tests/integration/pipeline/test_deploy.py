"""deploy/: the Prometheus config and alert rules pass promtool, really scrape a running pipeline and evaluate
cleanly; every metric the rules and the Grafana dashboard use is one the running pipeline exports (with a PLC sink,
so its outbox metrics are there too)."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.integration.conftest import (
    CATEGORY,
    DemoRun,
    free_port,
    start_cli,
    wait_for,
    write_pipeline,
)
from tests.integration.pipeline.test_backpressure import Prometheus

DEPLOY = REPO / "deploy"
PROMETHEUS_YML = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS_YML = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "stream-ad.json"
DATASOURCE = DEPLOY / "grafana" / "provisioning" / "datasources" / "stream-ad.yaml"
DASHBOARD_PROVIDER = DEPLOY / "grafana" / "provisioning" / "dashboards" / "stream-ad.yaml"

# The PLC outbox metrics, agreed by name with the PLC sinks' code; they exist only where a PLC sink is configured.
OUTBOX_METRICS = {
    "stream_ad_outbox_pending",
    "stream_ad_outbox_overflow_total",
    "stream_ad_outbox_delivered_total",
    "stream_ad_outbox_retries_total",
}
PROMETHEUS_OWN = {"up"}  # written by Prometheus for every target, not by the pipeline
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: strings, label matchers, label lists, ranges and function calls
    taken out, what remains are the selectors' names."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    return {t for t in re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b(?!\s*\()", expr)} - PROMQL_WORDS


def rule_exprs() -> list[str]:
    return [r["expr"] for g in yaml.safe_load(ALERTS_YML.read_text())["groups"] for r in g["rules"]]


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    for var in dash["templating"]["list"]:  # label_values(METRIC, label): only its first argument is a metric
        exprs.append(re.fullmatch(r"label_values\((\w+),\s*\w+\)", var["query"]["query"]).group(1))
    return exprs


def concrete(expr: str) -> str:
    """A dashboard expression as Grafana sends it: its variables filled in."""
    return expr.replace("$__rate_interval", "30s").replace('"$camera"', '".*"')


def test_promtool_accepts_config_and_rules() -> None:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.skip("promtool is not installed (Debian package prometheus; scripts/setup.sh installs it as root)")
    for args in (["check", "config", str(PROMETHEUS_YML)], ["check", "rules", str(ALERTS_YML)]):
        out = subprocess.run([tool, *args], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr


def _rule_fires(tmp_path: Path, alert: str, input_series: list[dict[str, str]], labels: dict[str, str],
                summary: str, *, severity: str = "critical", interval: str = "1m", quiet_at: str = "2m",
                fires_at: str = "4m", quiet_again_at: str | None = None) -> None:
    """promtool's rule unit test, one sample per `interval`: `alert` is quiet at `quiet_at` and fires at `fires_at`
    with `labels` and `summary` (and is quiet again at `quiet_again_at`, when given)."""
    tool = shutil.which("promtool")
    if tool is None:
        pytest.skip("promtool is not installed (Debian package prometheus; scripts/setup.sh installs it as root)")
    shutil.copy(ALERTS_YML, tmp_path / "alerts.yml")
    rule = next(r for r in yaml.safe_load(ALERTS_YML.read_text())["groups"][0]["rules"] if r.get("alert") == alert)
    checks = [
        {"eval_time": quiet_at, "alertname": alert, "exp_alerts": []},
        {"eval_time": fires_at, "alertname": alert, "exp_alerts": [{
            "exp_labels": {"severity": severity, **labels},
            "exp_annotations": {"summary": summary, "description": rule["annotations"]["description"]},
        }]},
    ]
    if quiet_again_at is not None:
        checks.append({"eval_time": quiet_again_at, "alertname": alert, "exp_alerts": []})
    case = {"rule_files": ["alerts.yml"], "evaluation_interval": interval, "tests": [{
        "interval": interval, "input_series": input_series, "alert_rule_test": checks}]}
    (tmp_path / "test.yml").write_text(yaml.safe_dump(case))
    out = subprocess.run([tool, "test", "rules", "test.yml"], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path, check=False)
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr


def test_sink_error_drops_fire_the_sink_errors_alert(tmp_path: Path) -> None:
    """A verdict dropped as sink_error fires StreamAdSinkErrors; other drops do not."""
    series = 'stream_ad_frames_dropped_total{camera="line1",stage="sink",reason="%s"}'
    _rule_fires(tmp_path, "StreamAdSinkErrors",
                [{"series": series % "sink_error", "values": "0 0 0 4 9 9"},
                 {"series": series.replace("line1", "line2") % "queue_full", "values": "0 5 10 15 20 25"}],
                {"camera": "line1"}, "camera line1: 9 verdicts not delivered (sink_error)")


def test_refused_peers_fire_the_refused_peers_alert(tmp_path: Path) -> None:
    """A refused handshake on a stage's tcp socket fires StreamAdRefusedPeers; a stage without any does not."""
    series = 'stream_ad_rejected_peers_total{stage="%s",reason="no_curve"}'
    _rule_fires(tmp_path, "StreamAdRefusedPeers",
                [{"series": series % "decide", "values": "0 0 0 3 3"},
                 {"series": series % "infer", "values": "0 0 0 0 0"}],
                {"stage": "decide", "reason": "no_curve"}, "decide: 3 connection(s) refused (no_curve)")


def test_a_hung_stage_fires_the_stage_hung_alert(tmp_path: Path) -> None:
    """A stage killed as hung fires StreamAdStageHung for its stage; stages that never hung do not."""
    series = 'stream_ad_stage_hangs_total{stage="%s"}'
    _rule_fires(tmp_path, "StreamAdStageHung",
                [{"series": series % "infer", "values": "0 0 0 1 1 1"},
                 {"series": series % "decide", "values": "0 0 0 0 0 0"}],
                {"stage": "infer"}, "stage infer hung 1 time(s) in 15 minutes")


def test_a_refused_reload_fires_the_reload_refused_alert(tmp_path: Path) -> None:
    """A reload refused fires StreamAdReloadRefused; applied reloads do not."""
    series = 'stream_ad_reloads_total{result="%s"}'
    _rule_fires(tmp_path, "StreamAdReloadRefused",
                [{"series": series % "refused", "values": "0 0 0 1 1 1"},
                 {"series": series % "applied", "values": "0 1 2 3 4 5"}],
                {"result": "refused"}, "1 reload(s) of the pipeline file refused in 15 minutes", severity="warning")


def test_drift_fires_the_score_drift_alert_after_a_minute(tmp_path: Path) -> None:
    """The console's drift gauge held at 1 for a minute fires StreamAdScoreDrift; it ends when the drift does."""
    series = 'stream_ad_console_drift_detected{camera="%s"}'
    _rule_fires(tmp_path, "StreamAdScoreDrift",
                [{"series": series % "line1", "values": "0 0 1 1 1 1 0"},
                 {"series": series % "line2", "values": "0 0 0 0 0 0 0"}],
                {"camera": "line1"}, "camera line1: good frames score higher than at calibration (drift)",
                severity="warning", interval="30s", quiet_at="90s", fires_at="150s", quiet_again_at="180s")


def test_grafana_provisioning_points_at_the_dashboard_and_datasource() -> None:
    source = yaml.safe_load(DATASOURCE.read_text())["datasources"][0]
    provider = yaml.safe_load(DASHBOARD_PROVIDER.read_text())["providers"][0]
    assert source["type"] == "prometheus" and provider["type"] == "file" and provider["options"]["path"]
    dash = json.loads(DASHBOARD.read_text())
    titles = " | ".join(p["title"] for p in dash["panels"]).lower()
    for topic in ("end-to-end latency", "per-stage", "frames per second", "drops by reason", "batch size",
                  "queue depth", "alarms per camera", "scores per camera", "outbox"):
        assert topic in titles, topic
    for panel in dash["panels"]:
        assert panel["targets"], panel["title"]
        assert {t["datasource"]["uid"] for t in panel["targets"]} == {source["uid"]}


def _sample_names(text: str) -> set[str]:
    return {re.split(r"[{ ]", line, maxsplit=1)[0] for line in text.splitlines() if line and line[0] != "#"}


@dataclass
class Scraped:
    exported: set[str]
    prom: Prometheus


@pytest.fixture(scope="module")
def scraped(demo_run: DemoRun, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    """A real pipeline scraped by a real Prometheus that runs deploy/'s config and rules (scrape and rule intervals
    shortened for the test). Its camera has one undecodable file, so a drop is counted; its Modbus PLC sink points at
    a port where no PLC answers, so alarms wait in the outbox and the outbox metrics move. Its console exports the
    drift gauge."""
    work = tmp_path_factory.mktemp("deploy")
    camera = work / "camera"
    for p in sorted((CATEGORY / "test").rglob("*.png"))[:24]:
        (camera / p.parent.name).mkdir(parents=True, exist_ok=True)
        (camera / p.parent.name / p.name).symlink_to(p)
    (camera / "000_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n cut off")
    metrics_port = free_port()
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    config["global"] = {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"}
    config["scrape_configs"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{metrics_port}"]
    shutil.copy(ALERTS_YML, work / "alerts.yml")
    prom = Prometheus(work, metrics_port, config=yaml.safe_dump(config))
    cfg = write_pipeline(work / "line.yaml", demo_run.model, work, metrics={"port": metrics_port},
                         source={"path": str(camera), "fps": 10, "loop": True},
                         console={"enabled": True, "port": free_port()},
                         sink={"outputs": [{"kind": "jsonl"},
                                           {"kind": "modbus", "host": "127.0.0.1", "port": free_port(),
                                            "timeout_s": 0.5}]})
    proc = start_cli("run", str(cfg), log=work / "run.log")
    try:
        wait_for(lambda: prom.query('stream_ad_frames_dropped_total{reason="decode_error"} > 0')
                 and prom.query("stream_ad_frames_scored_total > 5") and prom.query("stream_ad_outbox_pending > 0")
                 and prom.query("stream_ad_console_drift_detected >= 0"),
                 240, "Prometheus to scrape verdicts, a drop and alarms waiting in the outbox")
        time.sleep(3)  # a few more scrapes and rule evaluations
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
            exported = _sample_names(r.read().decode())
        yield Scraped(exported, prom)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        prom.close()


def test_every_metric_in_rules_and_dashboard_is_exported(scraped: Scraped) -> None:
    used = set().union(*(metric_names(e) for e in rule_exprs() + dashboard_exprs()))
    assert {"stream_ad_end_to_end_latency_seconds_bucket", "stream_ad_frames_dropped_total",
            "stream_ad_camera_stale", "stream_ad_stage_restarts_total", "stream_ad_outbox_pending"} <= used
    unknown = used - scraped.exported - PROMETHEUS_OWN
    assert not unknown, f"used in deploy/ but not exported by the pipeline: {sorted(unknown)}"
    assert OUTBOX_METRICS <= used & scraped.exported  # the backlog alert and the outbox panel, as agreed


def test_prometheus_scrapes_the_pipeline_and_evaluates_every_rule(scraped: Scraped) -> None:
    assert scraped.prom.value('up{job="stream_ad"}') == 1
    with urllib.request.urlopen(f"http://127.0.0.1:{scraped.prom.port}/api/v1/rules", timeout=10) as r:
        rules = [rule for g in json.loads(r.read())["data"]["groups"] for rule in g["rules"]]
    assert len(rules) == len(rule_exprs())
    assert all(rule["health"] == "ok" for rule in rules), [(r["name"], r.get("lastError")) for r in rules]


def test_every_dashboard_query_runs_and_shows_data(scraped: Scraped) -> None:
    for expr in dashboard_exprs():
        assert scraped.prom.query(concrete(expr)), f"no data for {expr}"  # query() asserts Prometheus accepted it
