"""The chart's alerts and Grafana dashboard, checked with the real Prometheus (Debian's ``prometheus`` package).

* ``promtool check rules`` and ``promtool test rules`` on the PrometheusRule the chart renders; the unit tests
  (tests/data/prometheus/alerts.test.yaml) have a firing and a quiet case for every alert.
* A real Prometheus scrapes a real ``referee serve`` (and a replica that is down) while the test sends
  allowed, denied, error and unavailable traffic through a registry that also answers 429 and 503, applies a
  reload and then breaks the configuration and the serving certificate. Every PromQL expression of the
  dashboard and of the rules is then evaluated through Prometheus' HTTP API and must return series (a
  dashboard expression: at least one finite value), every alert must be pending or firing in Prometheus'
  own rule engine, and the dashboard's variables must list this Referee.

Grafana itself is not installable here (no Debian, PyPI or npm package ships the server), so the dashboard is
checked through its queries and its structure, not rendered.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from tests.integration.conftest import SignedSet
from tests.integration.test_operations import RefereeProcess, health_get, post, scrape, total
from tests.support.content import make_image, push_image
from tests.support.prometheus import PrometheusServer, free_port, promtool, wait_for
from tests.support.referee import Pki, items_by_key, server_section, write_config
from tests.support.referrers_proxy import ReferrersProxy

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "referee"
DASHBOARD_FILE = CHART / "dashboards" / "referee.json"
UNIT_TESTS = REPO / "tests" / "data" / "prometheus" / "alerts.test.yaml"
RELEASE, NAMESPACE = "referee", "gatekeeper-system"
# What Grafana substitutes: a 5-minute window covers the whole test; instance "All" is Grafana's allValue.
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__range": "5m",
    "$namespace": NAMESPACE,
    "$job": RELEASE,
    "$instance": ".*",
}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

helm.disable_logging()


@dataclass
class Monitoring:
    groups: list[dict[str, Any]]
    dashboard: dict[str, Any]
    configmap: dict[str, Any]

    def alerts(self) -> dict[str, dict[str, Any]]:
        return {rule["alert"]: rule for group in self.groups for rule in group["rules"] if "alert" in rule}

    def write_rules(self, directory: Path) -> Path:
        path = directory / "rules.yaml"
        path.write_text(yaml.safe_dump({"groups": self.groups}, sort_keys=False))
        return path


@pytest.fixture(scope="module")
def monitoring() -> Monitoring:
    values = {
        "gatekeeper": {"clientCA": {"secretName": "gatekeeper-webhook-server-cert"}},
        "prometheusRule": {"enabled": True},
        "grafanaDashboard": {"enabled": True},
        "tls": {"allowOfflineCA": True},  # rendered offline, like helm template (docs/deploy.md, GitOps)
    }
    with helm.Chart.load(CHART) as chart:
        out = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    docs = [d for path, text in out.items() if not path.endswith("NOTES.txt") for d in yaml.safe_load_all(text) if d]
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    (configmap,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == f"{RELEASE}-dashboard"]
    return Monitoring(rule["spec"]["groups"], json.loads(configmap["data"]["referee.json"]), configmap)


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in panels(dashboard) for t in p.get("targets", [])]


def grafana(expr: str) -> str:
    """``expr`` as Grafana sends it to Prometheus."""
    for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_VARIABLES[name])
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    return expr


# -- promtool ----------------------------------------------------------------------------------------------


def test_rules_pass_promtool_check(monitoring: Monitoring, tmp_path: Path) -> None:
    result = promtool("check", "rules", str(monitoring.write_rules(tmp_path)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(monitoring.alerts())} rules found" in result.stdout
    assert set(monitoring.alerts()) == {
        "RefereeUnavailable",
        "RefereeReplicaDown",
        "RefereeAnswersNearDeadline",
        "RefereeAnswersFailing",
        "RefereeRegistryThrottled",
        "RefereeRegistryErrors",
        "RefereeCertificateExpiringSoon",
        "RefereeConfigReloadRejected",
        "RefereeTLSReloadRejected",
        "RefereeSharedCacheLocalOnly",
    }


def test_promtool_unit_tests_fire_and_stay_quiet_for_every_alert(monitoring: Monitoring, tmp_path: Path) -> None:
    monitoring.write_rules(tmp_path)
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    result = promtool("test", "rules", UNIT_TESTS.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    cases = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    fired = {c["alertname"] for t in cases for c in t["alert_rule_test"] if c["exp_alerts"]}
    quiet = {c["alertname"] for t in cases for c in t["alert_rule_test"] if not c["exp_alerts"]}
    assert fired == set(monitoring.alerts()) == quiet


def test_promtool_unit_tests_catch_a_wrong_threshold(monitoring: Monitoring, tmp_path: Path) -> None:
    """The unit tests fail when an alert's threshold changes (they test the rules, not themselves)."""
    groups = json.loads(json.dumps(monitoring.groups))
    for group in groups:
        for rule in group["rules"]:
            if rule.get("alert") == "RefereeRegistryErrors":
                rule["expr"] = rule["expr"].replace("> 0.05", "> 0.5")
    Monitoring(groups, {}, {}).write_rules(tmp_path)
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    result = promtool("test", "rules", UNIT_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0
    assert "RefereeRegistryErrors fires for the failing host only" in result.stdout + result.stderr


# -- the dashboard's structure -----------------------------------------------------------------------------


def test_dashboard_is_provisioning_ready(monitoring: Monitoring) -> None:
    dashboard = monitoring.dashboard
    assert dashboard == json.loads(DASHBOARD_FILE.read_text())  # the ConfigMap carries the file unchanged
    assert monitoring.configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["uid"] == "referee-overview"
    assert "id" not in dashboard and "__inputs" not in dashboard  # provisioning has no import step
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert {"namespace", "job", "instance"} <= set(variables)
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids))
    occupied: set[tuple[int, int]] = set()
    for panel in panels(dashboard):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & occupied, f"{panel['title']} overlaps another panel"
        occupied |= cells
        if panel["type"] == "row":
            continue
        assert panel["description"], panel["title"]
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert 'namespace=~"$namespace"' in target["expr"] and 'job=~"$job"' in target["expr"], target["expr"]
    # what the issue asks the dashboard to show
    exprs = " ".join(expr for _, expr in dashboard_queries(dashboard))
    for metric in (
        "referee_decisions_total",
        "referee_unmet_requirements_total",
        "referee_request_duration_seconds_bucket",
        "referee_verifier_duration_seconds_bucket",
        "referee_registry_request_duration_seconds_bucket",
        "referee_cache_events_total",
        "referee_registry_requests_total",
        "referee_verifications_in_flight",
        "referee_verifications_pending",
        "referee_config_last_reload_successful",
        "referee_tls_certificate_expiration_timestamp_seconds",
    ):
        assert metric in exprs, metric


# -- a real Prometheus scraping a real referee serve ------------------------------------------------------


def _images(registry_url: str) -> None:
    for repo in ("obs/throttled", "obs/flaky"):
        for round_ in (1, 2):
            for n in range(3):
                push_image(registry_url, repo, f"r{round_}-{n}", make_image(f"{repo}/{round_}/{n}"))


async def _round(
    referee: RefereeProcess, pki: Pki, proxy: ReferrersProxy, signed: SignedSet, dead_registry: str, n: int
) -> None:
    """allowed, denied, error and unavailable keys; cache hits; 429s and 503s; /mutate; a rejected request."""
    host = proxy.host
    ok, unsigned, missing = signed.ref("signed", host), signed.ref("unsigned", host), f"{host}/e2e/app:missing"
    throttled = [f"{host}/obs/throttled:r{n}-{i}" for i in range(3)]
    flaky = [f"{host}/obs/flaky:r{n}-{i}" for i in range(3)]
    for i in range(3):  # each tag resolution is answered twice with 429 (or 503), then succeeds on the retry
        proxy.status_override[f"/v2/obs/throttled/manifests/r{n}-{i}"] = (429, {}, 2)
        proxy.status_override[f"/v2/obs/flaky/manifests/r{n}-{i}"] = (503, {}, 2)

    body, _ = await post(referee, pki, "/verify", [ok, unsigned, "not a reference!", missing], f"mon-r{n}-a")
    items = items_by_key(body)
    assert items[ok]["value"]["allowed"] is True and items[unsigned]["value"]["allowed"] is False
    assert items["not a reference!"]["error"].startswith("REFERENCE_INVALID") and "NOT_FOUND" in items[missing]["error"]
    await post(referee, pki, "/verify", [ok], f"mon-r{n}-b")  # a verdict-cache hit
    slow, _ = await post(referee, pki, "/verify", [f"{host}/obs/slow:v1"], f"mon-r{n}-c")
    assert "DEADLINE_EXCEEDED" in slow["response"]["systemError"]
    down, _ = await post(referee, pki, "/verify", [f"{dead_registry}/obs/app:v1"], f"mon-r{n}-d")
    assert "REGISTRY_UNAVAILABLE" in down["response"]["systemError"]
    await post(referee, pki, "/verify", throttled + flaky, f"mon-r{n}-e")
    # retried within the request or, on a slow machine, by the verification that goes on after it
    await asyncio.to_thread(wait_for, lambda: not proxy.status_override, "every injected 429 and 503 served")
    pinned, _ = await post(referee, pki, "/mutate", [ok], f"mon-r{n}-f")
    assert items_by_key(pinned)[ok]["value"].endswith(signed.digest("signed"))
    rejected, _ = await post(referee, pki, "/verify", [], f"mon-r{n}-g", raw=b"{not json")
    assert "not JSON" in rejected["response"]["systemError"]


async def test_prometheus_evaluates_every_dashboard_and_alert_query_on_real_traffic(
    monitoring: Monitoring,
    referrers_proxy: ReferrersProxy,
    signed_set: SignedSet,
    pki: Pki,
    tmp_path: Path,
) -> None:
    proxy = referrers_proxy
    _images(proxy.url)
    proxy.path_delays["/v2/obs/slow/"] = 5.0  # longer than limits.verificationTimeout: never answered
    dead_registry, dead_replica = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"

    # A serving certificate that expires in 10 days (RefereeCertificateExpiringSoon), by the CA the client trusts.
    tls_dir = tmp_path / "tls"
    tls_dir.mkdir()
    leaf = pki.serving_ca.issue_cert("127.0.0.1", not_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=10))
    leaf.private_key_pem.write_to_path(str(tls_dir / "tls.key"))
    leaf.cert_chain_pems[0].write_to_path(str(tls_dir / "tls.crt"))
    server = server_section(
        pki,
        providerTimeout="2s",
        tls=pki.tls_section(certFile=str(tls_dir / "tls.crt"), keyFile=str(tls_dir / "tls.key")),
        decisionLog={"output": "stderr"},
    )
    hmac_key = tmp_path / "hmac.key"
    hmac_key.write_text("k" * 32)
    config: dict[str, Any] = {
        "registries": {
            "allow": ["127.0.0.1:*"],
            "hosts": [{"host": proxy.host, "plainHttp": True}, {"host": dead_registry, "plainHttp": True}],
        },
        "verifiers": [{"name": "cosign-ci", "type": "cosign", "keys": [str(signed_set.key_file)]}],
        "policy": {"type": "required-verifiers", "required": ["cosign-ci"]},
        "server": server,
        "limits": {"verificationTimeout": "3s"},
        # a shared cache nobody listens for: the replica answers local-only (RefereeSharedCacheLocalOnly)
        "cache": {"shared": {"url": f"redis://127.0.0.1:{free_port()}", "hmacKeyFile": str(hmac_key)}},
    }
    home = tmp_path / "home"
    home.mkdir()
    config_path = write_config(tmp_path / "referee.yaml", config)
    referee = RefereeProcess(config_path, tmp_path / "referee.log", home)
    rules = monitoring.write_rules(tmp_path)
    try:
        referee.start()
        instance = f"127.0.0.1:{referee.health_port}"
        scrape_job = {
            "job_name": RELEASE,
            "static_configs": [{"targets": [instance, dead_replica], "labels": {"namespace": NAMESPACE}}],
        }
        with PrometheusServer(tmp_path / "prometheus", [scrape_job], [rules]) as prom:

            async def scraped() -> None:
                """Wait until Prometheus holds the decision count Referee reports now."""
                want = total(await scrape(referee), "referee_decisions_total")
                expr = f'sum(referee_decisions_total{{instance="{instance}"}})'
                await asyncio.to_thread(wait_for, lambda: prom.value(expr) == want, f"a scrape showing {want}")

            await _round(referee, pki, proxy, signed_set, dead_registry, 1)
            await scraped()
            # An applied reload (new generation: verdicts are verified again in round 2).
            write_config(config_path, {**config, "cache": {**config["cache"], "verdictTtl": "10m"}})
            generation = json.loads((await health_get(referee, "/readyz"))[1])["configGeneration"]

            async def reloaded() -> bool:
                return bool(json.loads((await health_get(referee, "/readyz"))[1])["configGeneration"] != generation)

            while not await reloaded():
                await asyncio.sleep(0.05)
            await _round(referee, pki, proxy, signed_set, dead_registry, 2)
            await scraped()

            # Break the serving certificate and then the configuration: both reloads are rejected.
            (tls_dir / "tls.crt").write_text("not a certificate\n")
            await asyncio.to_thread(
                wait_for,
                lambda: any(line["event"] == "tls_reload_rejected" for line in referee.lines()),
                "tls_reload_rejected",
            )
            config_path.write_text("server: [not, a, mapping\n")
            while "lastReloadError" not in (await health_get(referee, "/readyz"))[1]:
                await asyncio.sleep(0.05)
            for gauge in ("referee_config_last_reload_successful", "referee_tls_last_reload_successful"):
                expr = f'{gauge}{{instance="{instance}"}}'
                await asyncio.to_thread(wait_for, lambda e=expr: prom.value(e) == 0, f"{gauge} 0 in Prometheus")

            # Every dashboard query returns series, at least one with a finite value.
            empty = []
            for title, expr in dashboard_queries(monitoring.dashboard):
                result = prom.query(grafana(expr))
                if not any(math.isfinite(float(s["value"][1])) for s in result):
                    empty.append((title, grafana(expr), result))
            assert not empty, "dashboard queries without data:\n" + "\n".join(map(str, empty))
            # The dashboard's variables list this Referee (Grafana asks the label-values API).
            for variable in monitoring.dashboard["templating"]["list"]:
                match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"])
                if match is None:
                    continue
                values = prom.label_values(match.group(2), grafana(match.group(1)))
                wanted = {"namespace": NAMESPACE, "job": RELEASE, "instance": instance}[match.group(2)]
                assert wanted in values, (variable["name"], values)

            # Every alert's expression holds for this traffic, and Prometheus' rule engine agrees.
            alerts = monitoring.alerts()
            live = {name: rule for name, rule in alerts.items() if name != "RefereeUnavailable"}
            for name, rule in live.items():
                assert prom.query(rule["expr"]), f"{name}: no series for {rule['expr']}"

            def active() -> set[str]:
                return {a["labels"]["alertname"] for a in prom.alerts() if a["state"] in ("pending", "firing")}

            await asyncio.to_thread(wait_for, lambda: set(live) <= active(), "every alert pending")
            health = {rule["name"]: (rule["health"], rule.get("lastError", "")) for rule in prom.rules()}
            assert health == dict.fromkeys(alerts, ("ok", "")), health
            throttled = [a for a in prom.alerts() if a["labels"]["alertname"] == "RefereeRegistryThrottled"]
            assert {a["labels"]["host"] for a in throttled} == {proxy.host}
            expiring = [a for a in prom.alerts() if a["labels"]["alertname"] == "RefereeCertificateExpiringSoon"]
            assert {a["labels"]["certificate"] for a in expiring} == {"serving"}

            # The decision log has one line per key of each request, apart from the operational log.
            decisions = [line for line in referee.lines() if line.get("logger") == "referee.decision"]
            first = {line["key"]: line for line in decisions if line["request_id"] == "mon-r1-a"}
            assert {k: (v["result"], v["reason_code"]) for k, v in first.items()} == {
                signed_set.ref("signed", proxy.host): ("allowed", "POLICY_SATISFIED"),
                signed_set.ref("unsigned", proxy.host): ("denied", "NO_EVIDENCE"),
                "not a reference!": ("error", "REFERENCE_INVALID"),
                f"{proxy.host}/e2e/app:missing": ("error", "NOT_FOUND"),
            }
            slow = [line for line in decisions if line["request_id"] == "mon-r2-c"]
            assert [(line["result"], line["reason_code"]) for line in slow] == [("unavailable", "DEADLINE_EXCEEDED")]

            # Last: the replica stops; RefereeUnavailable's expression holds once Prometheus sees it down.
            referee.stop()
            await asyncio.to_thread(
                wait_for, lambda: prom.value(f'up{{instance="{instance}"}}') == 0, "the stopped replica down"
            )
            assert prom.query(alerts["RefereeUnavailable"]["expr"])
            await asyncio.to_thread(wait_for, lambda: "RefereeUnavailable" in active(), "RefereeUnavailable pending")
    finally:
        referee.stop()
