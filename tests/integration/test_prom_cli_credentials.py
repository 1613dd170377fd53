"""The CLI commands that talk to Prometheus (explain, doctor) take the scaler's
--credentials FILE: a plan naming an entry needs it, and the entry's token is what is sent."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from fake_http import FakeHTTPServer
from scaler.cli import main
from service_harness import test_plan, write_plans


@pytest.mark.parametrize("command", ["explain", "doctor"])
def test_commands_that_read_prometheus_take_the_credentials_file(tmp_path: Path, command: str) -> None:
    with FakeHTTPServer() as fake:
        doc = test_plan("llama-8b", fake.url, "x")
        doc["spec"]["metrics"]["prometheus"]["credentials"] = "prom"
        write_plans(tmp_path, [doc])
        plan = str(tmp_path / "llama-8b-inference.yaml")
        runner = CliRunner()
        result = runner.invoke(main, [command, "-f", plan])
        assert result.exit_code == 2
        assert result.output.strip() == (
            f"error: {plan}: spec.metrics.prometheus.credentials: names 'prom' but the scaler has no --credentials file"
        )
        assert fake.requests == []
        token = tmp_path / "token"
        token.write_text("tok-1\n")
        creds = tmp_path / "credentials.yaml"
        creds.write_text(f"credentials:\n  prom: {{urlPrefixes: ['{fake.url}'], bearerTokenFile: {token}}}\n")
        result = runner.invoke(main, [command, "-f", plan, "--credentials", str(creds)])
        assert result.exception is None or isinstance(result.exception, SystemExit), result.output
        assert fake.requests and {r["headers"]["Authorization"] for r in fake.requests} == {"Bearer tok-1"}
