"""Simulated OCPP 1.6 charge points (the `ocpp` library's own client) for `energy-ingest simulate
--ocpp` and the benchmark: each connects to the gateway, boots, and sends a MeterValues with its
Wh register at a fixed period, resending after a CALLERROR as a charger does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import websockets
from ocpp.exceptions import OCPPError
from ocpp.v16 import ChargePoint
from ocpp.v16 import call as call16
from websockets.typing import Subprotocol

# A charger draws about 11 kW: 11,000 Wh an hour, this much Wh per second of simulated time.
WH_PER_SECOND = 11_000 / 3600


@dataclass
class ChargePointRun:
    """What the charge points saw: MeterValues confirmed, CALLERRORs answered (then resent),
    connections that failed, and the seconds from the first connection to the last answer."""

    charge_points: int
    confirmed: int = 0
    refused: int = 0
    failed_connections: int = 0
    seconds: float = 0.0
    first_failure: str = ""  # why the first connection that failed did

    @property
    def per_s(self) -> float:
        return self.confirmed / self.seconds if self.seconds else 0.0


def _iso(micros: int) -> str:
    return datetime.fromtimestamp(micros / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class _Plan:
    uri: str
    values: int
    period_s: float
    start_us: int
    step_us: int


async def _charge_point(plan: _Plan, name: str, run: ChargePointRun, stop: asyncio.Event) -> None:
    uri, values, period_s = plan.uri, plan.values, plan.period_s
    start_us, step_us = plan.start_us, plan.step_us
    try:
        async with websockets.connect(
            f"{uri}/{name}", subprotocols=[Subprotocol("ocpp1.6")], open_timeout=60
        ) as connection:
            charge_point = ChargePoint(name, connection)
            listening = asyncio.create_task(charge_point.start())
            try:
                await charge_point.call(
                    call16.BootNotification(
                        charge_point_model="simulator", charge_point_vendor="energy-ingest"
                    )
                )
                began = time.monotonic()
                for k in range(values):
                    if stop.is_set():
                        return
                    await asyncio.sleep(max(0.0, began + k * period_s - time.monotonic()))
                    micros = start_us + k * step_us
                    wh = round(micros / 1e6 * WH_PER_SECOND) % 1_000_000_000
                    request = call16.MeterValues(
                        connector_id=1,
                        meter_value=[
                            {
                                "timestamp": _iso(micros),
                                "sampledValue": [
                                    {"value": str(wh), "unit": "Wh"},
                                    {"value": "230.0", "measurand": "Voltage", "phase": "L1-N"},
                                ],
                            }
                        ],
                    )
                    while not stop.is_set():
                        try:
                            await charge_point.call(request, suppress=False)
                            run.confirmed += 1
                            break
                        except OCPPError:
                            run.refused += 1
                            await asyncio.sleep(1.0)
            finally:
                listening.cancel()
    except (TimeoutError, OSError, websockets.WebSocketException) as error:
        run.failed_connections += 1
        if not run.first_failure:
            run.first_failure = f"{name}: {type(error).__name__}: {error}"


async def drive(
    uri: str,
    charge_points: int,
    values: int,
    *,
    period_s: float = 1.0,
    start_us: int,
    step_us: int = 60_000_000,
    prefix: str = "SIM-CP",
    stop_when: Callable[[], bool] | None = None,
    run: ChargePointRun | None = None,
) -> ChargePointRun:
    """`charge_points` charge points named `<prefix>-00000`… at `uri` (ws://host:port), each
    sending `values` MeterValues one per `period_s` seconds of real time, timestamped from
    `start_us` every `step_us` (a minute by default: a tenth of a minute's fleet reporting 60
    times faster). Counts into `run` when given, so another thread can watch it grow."""
    run = run if run is not None else ChargePointRun(charge_points)
    stop = asyncio.Event()

    async def watch() -> None:  # e.g. a Ctrl-C seen by another thread's handler
        while stop_when is not None and not stop.is_set():
            if stop_when():
                stop.set()
            await asyncio.sleep(0.2)

    watcher = asyncio.create_task(watch())
    started = time.monotonic()
    plan = _Plan(uri, values, period_s, start_us, step_us)
    try:
        await asyncio.gather(
            *(_charge_point(plan, f"{prefix}-{n:05d}", run, stop) for n in range(charge_points))
        )
    finally:
        stop.set()
        await watcher
    run.seconds = time.monotonic() - started
    return run


def drive_blocking(uri: str, charge_points: int, values: int, **options: Any) -> ChargePointRun:
    return asyncio.run(drive(uri, charge_points, values, **options))
