#!/usr/bin/env bash
# Where the CPU goes during ingestion: one hour of the 10,000 x 10,000 fleet streamed by
# `energy-ingest simulate` into `energy-ingest run`, with the CPU seconds each part used.
# Usage: tools/cpu_split.sh  (needs the local PostgreSQL at 127.0.0.1:5432; makes ei_cpu_split)
set -euo pipefail
cd "$(dirname "$0")/.."
export DATABASE_URL=postgresql://postgres@127.0.0.1:5432/ei_cpu_split
psql -h 127.0.0.1 -U postgres -d test -qc 'DROP DATABASE IF EXISTS ei_cpu_split' -c 'CREATE DATABASE ei_cpu_split'
.venv/bin/energy-ingest migrate 2>/dev/null
METER_LISTEN_ADDR=127.0.0.1:50071 VEHICLE_LISTEN_ADDR=127.0.0.1:50072 \
  ANALYTICS_LISTEN_ADDR=127.0.0.1:50073 .venv/bin/energy-ingest run >/dev/null 2>&1 &
runner=$!
trap 'kill -INT $runner; wait $runner || true' EXIT
sleep 6
cpu() { for p in $(pgrep -f "$1"); do awk '{print $14+$15}' "/proc/$p/stat"; done | awk '{s+=$1} END {print s/100}'; }
pg() { for p in $(pgrep -u postgres postgres); do awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null; done | awk '{s+=$1} END {print s/100}'; }
m0=$(cpu "serve meter"); v0=$(cpu "serve vehicle"); p0=$(pg)
/usr/bin/time -f "client CPU: %U s user + %S s system in %e s" \
  env METER_TARGET=127.0.0.1:50071 VEHICLE_TARGET=127.0.0.1:50072 ANALYTICS_LISTEN_ADDR=127.0.0.1:50073 \
  .venv/bin/energy-ingest simulate --chargers 10000 --vehicles 10000 --hours 1 2>&1 | tr '\r' '\n' | grep -v "^\[" | tail -6
echo "MeterService CPU $(echo "$(cpu "serve meter") - $m0" | bc) s, VehicleService CPU $(echo "$(cpu "serve vehicle") - $v0" | bc) s, PostgreSQL CPU $(echo "$(pg) - $p0" | bc) s"
