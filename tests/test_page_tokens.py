"""Malformed page tokens are INVALID_ARGUMENT naming page_token end to end, from both
services that page (the decoding itself is tested in tests/unit/test_paging.py)."""

from __future__ import annotations

import grpc
import pytest
from energy.meter.v1 import meter_service_pb2, meter_service_pb2_grpc
from energy.vehicle.v1 import vehicle_service_pb2, vehicle_service_pb2_grpc

from services.common import paging
from tests.conftest import InProcessServer
from tests.unit.test_paging import MALFORMED

E2E_TOKENS = MALFORMED[:6]


@pytest.mark.e2e
def test_malformed_tokens_are_invalid_argument_end_to_end(
    meter_server: InProcessServer, vehicle_server: InProcessServer
) -> None:
    with meter_server.channel() as meter_channel, vehicle_server.channel() as vehicle_channel:
        meter_stub = meter_service_pb2_grpc.MeterServiceStub(meter_channel)
        vehicle_stub = vehicle_service_pb2_grpc.VehicleServiceStub(vehicle_channel)
        calls = []
        for token in E2E_TOKENS:
            calls.append(
                lambda token=token: meter_stub.ListChargerStatuses(
                    meter_service_pb2.ListChargerStatusesRequest(page_token=token), timeout=30
                )
            )
            calls.append(
                lambda token=token: vehicle_stub.ListVehicleStatuses(
                    vehicle_service_pb2.ListVehicleStatusesRequest(page_token=token), timeout=30
                )
            )
        for index, call in enumerate(calls):
            with pytest.raises(grpc.RpcError) as caught:
                call()
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, index
            assert "page_token" in (caught.value.details() or ""), index
        # And the servers still answer a well-formed token.
        token = paging.encode_token("CHG-000")
        listed = meter_stub.ListChargerStatuses(
            meter_service_pb2.ListChargerStatusesRequest(page_token=token), timeout=30
        )
        assert list(listed.charger_statuses) == []
