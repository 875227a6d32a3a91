"""The pimsync command: clear errors instead of tracebacks, and the README's first command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import app
from app.config import reset_settings_cache

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith("PIMSYNC_") and key not in ("PIMSYNC_ICECAT_DIR",):
            monkeypatch.delenv(key)
    reset_settings_cache()
    yield CliRunner()
    reset_settings_cache()


def test_missing_source_is_one_clear_line(runner: CliRunner):
    result = runner.invoke(app, ["completeness", "--source", "/no/such/catalog"])
    assert result.exit_code == 1
    assert "not found" in result.stderr and "Traceback" not in result.output + result.stderr


def test_unknown_channel_is_bad_input(runner: CliRunner):
    result = runner.invoke(
        app, ["completeness", "--source", "sample", "--channel", "nope", "--channels", "config"]
    )
    assert result.exit_code == 2
    assert "unknown channel(s) nope" in result.stderr


def test_completeness_on_the_sample_uses_the_configured_channels(runner: CliRunner):
    result = runner.invoke(app, ["completeness", "--json"])
    assert result.exit_code == 0, result.stderr
    import json

    data = json.loads(result.stdout)["channels"]
    assert set(data) == {"de_storefront", "at_storefront", "uk_marketplace", "b2b_portal"}
    assert set(data["at_storefront"]) == {"de_AT"}
    de = data["de_storefront"]["de_DE"]
    assert 0 < de["complete"] < de["products"]
    assert "description" in de["missing_top"]


def test_check_reports_a_broken_channels_file(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    assert runner.invoke(app, ["check"]).exit_code == 0
    bad = tmp_path / "channels.yaml"
    bad.write_text(
        "channels:\n  web:\n    pim_scope: ecommerce\n    locales: [german]\n    currency: EUR\n"
    )
    monkeypatch.setenv("PIMSYNC_CHANNELS_FILE", str(bad))
    reset_settings_cache()
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 1
    assert "german" in result.stderr and "web" in result.stderr
    assert "Traceback" not in result.stderr


def test_commands_on_an_unmigrated_database_say_what_to_do(runner: CliRunner):
    result = runner.invoke(app, ["runs"])
    assert result.exit_code == 1
    assert "pimsync migrate" in result.stderr
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    result = runner.invoke(app, ["runs"])
    assert result.exit_code == 0, result.stderr
    assert runner.invoke(app, ["dead-letters", "replay"]).exit_code == 2


def test_demo_runs_on_the_embedded_default(tmp_path: Path):
    """`pimsync demo`: no servers, no settings (README's first set-up command)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIMSYNC_")}
    result = subprocess.run(
        [sys.executable, "-m", "app", "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for channel in ("de_storefront", "at_storefront", "uk_marketplace", "b2b_portal"):
        assert channel in out
    assert "Full sync" in out and "Delta sync" in out and "Channel catalogs now" in out
    assert "filtered" in out and "no_dangerous_goods" in out
    assert "no worker consumes" not in result.stderr  # its worker is in-process
    assert (tmp_path / ".pimsync" / "demo" / "demo.db").exists()
    assert not (tmp_path / "pimsync.db").exists()  # the demo keeps to its own database
