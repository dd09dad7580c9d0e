"""`energy-ingest bench --quick` runs end to end and reports every measurement. No thresholds:
timing belongs to the benchmark, not to tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


def test_quick_benchmark_reports_every_measurement(postgres_url, tmp_path):
    output = tmp_path / "bench.json"
    env = {**os.environ, "DATABASE_URL": postgres_url}
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "bench", "--quick", "--output", str(output)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    results = json.loads(output.read_text())
    for rate in ("limit_per_s", "writer_sql_per_s", "ingest_per_s", "per_request_per_s"):
        assert results[rate] > 0, rate
    ingest = results["ingest"]
    assert ingest["accepted"] == ingest["readings"] == results["readings"]
    for party in ("loader_cpu_us", "services_cpu_us", "postgres_cpu_us"):
        assert ingest[party] > 0, party
    assert set(results["ratios"]) == {
        "ingest_vs_limit",
        "ingest_vs_per_request",
        "analytics_p99_vs_sql_p99",
    }
    unary = {run["in_flight"]: run for run in results["unary"]}
    assert set(unary) == {10, 50}
    for run in unary.values():
        assert run["errors"] == 0 and run["calls"] > 0
        assert run["server_cpu_us"] > 0 and run["postgres_cpu_us"] > 0
    fleet = results["fleet"]
    assert fleet["errors"] == 0
    assert fleet["readings_stored"] == fleet["readings_sent"] > 0
    assert fleet["all_held"], "every stream was open on the server at the same time"
    assert results["analytics"]["calls"] > 0 and results["analytics"]["grpc_p99_ms"] > 0
    ocpp = results["ocpp"]
    assert ocpp["confirmed"] == ocpp["charge_points"] * 5 and ocpp["failed_connections"] == 0
    assert ocpp["gateway_cpu_us"] > 0 and ocpp["meter_cpu_us"] > 0
    mixed = results["mixed"]
    for name in ("ingest", "status", "analytics"):
        for run in ("idle", "loaded"):
            figures = mixed[run][name]
            assert figures["errors"] == 0 and figures["calls"] > 0, (run, name)
            assert 0 < figures["p50_ms"] <= figures["p99_ms"], (run, name)
    for key in ("status", "status_uncached"):
        assert results[key]["chargers"] > 0 and results[key]["clients_per_s"] > 0
    # The ingest phase alone stored 30 minutes of 1,000 chargers on the day dropped.
    assert results["day_drop"]["rows"] >= 30 * 1_000
    assert results["day_drop"]["delete_seconds"] > 0 and results["day_drop"]["drop_seconds"] > 0
    # The ingest phase's 30 minutes: one hour's rollups (or two, if they straddle one).
    assert results["rollups"]["hours"] in (1, 2) and results["rollups"]["readings"] >= 60_000
    assert results["rollups"]["seconds"] > 0
    window = results["long_window"]
    # 3 days of 2 vehicles and their chargers, a reading a minute each.
    assert (window["days"], window["readings"], window["calls"]) == (3, 2 * 2 * 3 * 1440, 10)
    assert window["raw_p50_ms"] > 0 and window["rollups_p50_ms"] > 0
    growth = results["growth"]
    assert growth["first_per_s"] > 0 and growth["after_per_s"] > 0
    assert growth["history_rows"] >= 2_000_000 + growth["first_readings"] + growth["after_readings"]
    listing = results["charger_listing"]
    # Every charger a phase before it wrote (the fleet's 1,000 and the other phases' own ids),
    # computed whole for the first page, twice.
    assert listing["error"] is None and listing["devices"] >= 1_000
    assert len(listing["seconds"]) == 2 and min(listing["seconds"]) > 0
    completeness = results["data_completeness"]
    # The fleet's 1,000 chargers and 1,000 vehicles at least, with the other phases' own ids.
    assert completeness["error"] is None and completeness["devices"] >= 2_000
    assert len(completeness["seconds"]) == 2 and min(completeness["seconds"]) > 0
    observability = results["observability"]
    assert observability["runs"] == 1
    for key in ("stream", "unary"):
        rates = observability[f"{key}_per_s"]
        assert set(rates) == {"off", "on", "sampled"}
        assert all(len(values) == 1 and values[0] > 0 for values in rates.values()), rates
        assert observability[f"{key}_ratio"]["off"] == 1.0
        cpu = observability[f"{key}_cpu_us"]
        assert all(len(values) == 1 and values[0] > 0 for values in cpu.values()), cpu
        assert observability[f"{key}_cpu_ratio"]["off"] == 1.0
    # Tracing was on: the services' spans reached the receiver (flushed as they stopped).
    assert observability["spans"] > 0
    assert results["machine"]["cpus"] and results["machine"]["postgresql"]
    assert "| ingest: recorded IngestReadings streams from the loader process" in result.stdout
