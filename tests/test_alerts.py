"""The alert rules (docker/prometheus/alerts.yml): parsed and checked always (a runbook per
alert, only metrics pimsync exports), loaded by the compose Prometheus, and unit-tested with
promtool's rule test format (``promtool test rules``) when promtool is there (CI has it)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.prereq import found

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
RULES = DOCKER / "prometheus" / "alerts.yml"
PROMTOOL_HINT = "not installed (apt-get install prometheus)"
# Exported by the queue-consumer work (issue 17, item 1), named here before it lands.
ANNOUNCED = {"pimsync_queue_without_consumer"}
# What issue 17 asks alerts for, by the alert that answers it.
REQUIRED = {
    "PimsyncPimDown",  # PIM down
    "PimsyncRunStuck",  # run stuck (no progress for N minutes)
    "PimsyncDeadLettersRising",
    "PimsyncErrorBudgetBurned",
    "PimsyncQueueWithoutConsumer",
    "PimsyncBacklogOld",  # backlog age
    "PimsyncEventToVisibleLagHigh",  # event-to-visible lag over its objective
    "PimsyncCursorLag",
}


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def _exported() -> set[str]:
    """Every metric name pimsync defines (counted in processes or read at scrape time), with
    the series names Prometheus derives from counters and histograms."""
    source = "".join((ROOT / "app" / p).read_text() for p in ("metrics.py", "web/metrics.py"))
    names = set(re.findall(r"[\"'](pimsync_[a-z_]+)[\"']", source)) | ANNOUNCED
    derived = {f"{n}{s}" for n in names for s in ("_total", "_bucket", "_sum", "_count")}
    return names | derived


def test_every_alert_has_a_runbook_and_uses_known_metrics(rules: list[dict[str, Any]]) -> None:
    exported = _exported()
    assert "pimsync_run_progress_updated_timestamp_seconds" in exported
    for rule in rules:
        name = rule["alert"]
        notes = rule.get("annotations", {})
        assert notes.get("summary"), f"{name}: no summary"
        runbook = notes.get("runbook", "")
        assert "Check:" in runbook and "Do:" in runbook, f"{name}: runbook says what to check/do"
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        used = set(re.findall(r"\bpimsync_[a-z_]+", rule["expr"]))
        assert used, f"{name}: no pimsync metric"
        assert used <= exported, f"{name}: unknown metrics {sorted(used - exported)}"


def test_the_alerts_issue_17_asks_for_are_there(rules: list[dict[str, Any]]) -> None:
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    assert set(names) >= REQUIRED, sorted(REQUIRED - set(names))


def test_the_compose_prometheus_loads_the_rules() -> None:
    config = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    compose = yaml.safe_load((DOCKER / "compose.yml").read_text())
    mounts = {
        m.split(":")[1]: m.split(":")[0] for m in compose["services"]["prometheus"]["volumes"]
    }
    assert mounts["/etc/prometheus/rules/pimsync.yml"] == "./prometheus/alerts.yml"
    patterns = config["rule_files"]
    assert any(Path("/etc/prometheus/rules/pimsync.yml").match(p) for p in patterns), patterns


# --- promtool ---------------------------------------------------------------------------------


def _labels(**kv: str) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in kv.items()) + "}"


# Each case: input series, when to evaluate, the alerts expected then (labels, summary).
# Description and runbook are static texts, taken from the rules file.
CASES: list[dict[str, Any]] = [
    {
        "alert": "PimsyncPimDown",
        "series": {'pimsync_pim_up{job="pimsync-web"}': "1 1 0x20"},
        "at": {"5m": [], "10m": [({"job": "pimsync-web"}, None)]},
    },
    {
        "alert": "PimsyncRunStuck",
        "series": {
            "pimsync_run_progress_updated_timestamp_seconds"
            + _labels(kind="full", channel="de_storefront", run_id="stuck1"): "0x40",
            # a run whose count moves every minute
            "pimsync_run_progress_updated_timestamp_seconds"
            + _labels(kind="delta", channel="pim", run_id="moving1"): "0+60x40",
        },
        "at": {
            "15m": [],
            "25m": [
                (
                    {"kind": "full", "channel": "de_storefront", "run_id": "stuck1"},
                    "Run stuck1 (full de_storefront) has made no progress for 15 minutes",
                )
            ],
        },
    },
    {
        "alert": "PimsyncDeadLettersRising",
        "series": {
            'pimsync_dead_letters_open{channel="de_storefront",kind="publish"}': "0+1x60",
            'pimsync_dead_letters_open{channel="uk_marketplace",kind="publish"}': "5x60",
        },
        "at": {
            "40m": [
                (
                    {"channel": "de_storefront"},
                    "Dead letters of de_storefront rose by more than 10 in 30 minutes",
                )
            ]
        },
    },
    {
        "alert": "PimsyncErrorBudgetBurned",
        "series": {
            'pimsync_sync_runs_total{channel="de_storefront",kind="full",status="aborted"}': (
                "0 0 0 1 1 1 1 1 1 1"
            ),
            'pimsync_sync_runs_total{channel="de_storefront",kind="full",status="completed"}': (
                "0 1 2 3 4 5 6 7 8 9"
            ),
        },
        "at": {
            "2m": [],
            "9m": [
                (
                    {"channel": "de_storefront"},
                    "A full sync of de_storefront was aborted: its error budget is burned",
                )
            ],
        },
    },
    {
        "alert": "PimsyncUnitFailureRateHigh",
        "series": {
            'pimsync_units_total{channel="a",kind="delta",outcome="failed"}': "0+10x100",
            'pimsync_units_total{channel="a",kind="delta",outcome="published"}': "0+100x100",
            'pimsync_units_total{channel="b",kind="delta",outcome="failed"}': "0x100",
            'pimsync_units_total{channel="b",kind="delta",outcome="published"}': "0+100x100",
        },
        "at": {
            "80m": [({"channel": "a"}, "Over 5 % of a's units failed in the last hour")],
        },
    },
    {
        "alert": "PimsyncQueueWithoutConsumer",
        "series": {
            'pimsync_queue_without_consumer{queue="events.catalog"}': "1x10",
            'pimsync_queue_without_consumer{queue="sync"}': "0x10",
        },
        "at": {
            "1m": [],
            "5m": [
                (
                    {"queue": "events.catalog"},
                    "Queue events.catalog receives messages and no worker consumes it",
                )
            ],
        },
    },
    {
        "alert": "PimsyncBacklogOld",
        "series": {
            'pimsync_backlog_oldest_seconds{backlog="publish_batches"}': "0+60x40",
            'pimsync_backlog_oldest_seconds{backlog="pim_events"}': "0x40",
        },
        "at": {
            "18m": [],
            "25m": [
                (
                    {"backlog": "publish_batches"},
                    "The oldest publish_batches work has waited over 15 minutes",
                )
            ],
        },
    },
    {
        "alert": "PimsyncEventToVisibleLagHigh",
        # pricing's events take 5 to 10 s; inventory's under 1 s
        "series": {
            'pimsync_projection_lag_seconds_bucket{domain="pricing",le="1"}': "0x40",
            'pimsync_projection_lag_seconds_bucket{domain="pricing",le="5"}': "0x40",
            'pimsync_projection_lag_seconds_bucket{domain="pricing",le="10"}': "0+10x40",
            'pimsync_projection_lag_seconds_bucket{domain="pricing",le="+Inf"}': "0+10x40",
            'pimsync_projection_lag_seconds_bucket{domain="inventory",le="1"}': "0+10x40",
            'pimsync_projection_lag_seconds_bucket{domain="inventory",le="5"}': "0+10x40",
            'pimsync_projection_lag_seconds_bucket{domain="inventory",le="10"}': "0+10x40",
            'pimsync_projection_lag_seconds_bucket{domain="inventory",le="+Inf"}': "0+10x40",
        },
        "at": {
            "25m": [
                (
                    {"domain": "pricing"},
                    "Events of pricing take over 5 s (p99) to become visible on product pages",
                )
            ]
        },
    },
    {
        "alert": "PimsyncCursorLag",
        "series": {
            'pimsync_cursor_age_seconds{cursor="ingest"}': "0+60x60",
            'pimsync_cursor_age_seconds{cursor="channel:de_storefront"}': "0+60x60",
        },
        "at": {
            "35m": [],
            "45m": [({"cursor": "ingest"}, "Cursor ingest has stopped moving")],
        },
    },
]


def _unit_tests(rules: list[dict[str, Any]], rules_file: Path) -> dict[str, Any]:
    by_name = {rule["alert"]: rule for rule in rules}
    tests = []
    for case in CASES:
        rule = by_name[case["alert"]]
        checks = []
        for at, expected in case["at"].items():
            alerts = []
            for labels, summary in expected:
                notes = dict(rule["annotations"])
                if summary is not None:
                    notes["summary"] = summary
                alerts.append(
                    {"exp_labels": {**labels, **rule["labels"]}, "exp_annotations": notes}
                )
            checks.append({"eval_time": at, "alertname": case["alert"], "exp_alerts": alerts})
        tests.append(
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in case["series"].items()],
                "alert_rule_test": checks,
            }
        )
    return {"rule_files": [str(rules_file)], "evaluation_interval": "1m", "tests": tests}


def test_every_alert_has_a_unit_test(rules: list[dict[str, Any]]) -> None:
    assert {c["alert"] for c in CASES} == {r["alert"] for r in rules}
    for case in CASES:  # each fires somewhere and is quiet somewhere (another series, a time)
        fired = [labels for expected in case["at"].values() for labels, _ in expected]
        assert fired, case["alert"]
        assert len(case["series"]) > 1 or any(not e for e in case["at"].values()), case["alert"]


def test_rules_pass_promtool_check() -> None:
    promtool = found("promtool", shutil.which("promtool"), PROMTOOL_HINT)
    done = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True)
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()


def test_rules_pass_their_promtool_unit_tests(rules: list[dict[str, Any]], tmp_path: Path) -> None:
    promtool = found("promtool", shutil.which("promtool"), PROMTOOL_HINT)
    spec = tmp_path / "alerts.test.yml"
    spec.write_text(yaml.safe_dump(_unit_tests(rules, RULES), sort_keys=False))
    done = subprocess.run([promtool, "test", "rules", str(spec)], capture_output=True)
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
