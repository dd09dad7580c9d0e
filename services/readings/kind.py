"""What makes one kind of reading (a charger's, a vehicle's): the declaration the shared
reading service is built from.

MeterService and VehicleService are one machine with different readings: the same ingest
(unary and streaming), status (get, list), group commit and validation. Each kind describes
itself once here (its messages, its id, its columns and its checks); what is really its own
(SummarizeConsumption, ListChargingSessions) lives in its package beside the declaration."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, cast

from google.protobuf.descriptor import Descriptor
from google.protobuf.message_factory import GetMessageClass

from services.common.validation import BatchValidator, ReadingRules


@dataclass(frozen=True)
class Column:
    """A value column of a reading, after its id and its time: the proto field and the column
    share the name. `sql_type` is "float8" or "text" (text compares bytewise, COLLATE "C");
    `optional` columns are NULL where the device did not send the field (an unknown
    measurand, or the energy form it did not use)."""

    name: str
    sql_type: str
    optional: bool = False


class ReadingContract:
    """The generated pieces a reading service answers with, found from its descriptors so that
    a kind names only its modules and its status message.

    Raises ValueError at import when the service lacks the shared shape: IngestReading,
    IngestReadings answering `rejections` and `conflicting_readings`, an `outcome` enum with
    ACCEPTED, DUPLICATE and CONFLICT, one List… RPC answering a repeated field of the status
    message, and ListReportingSummaries answering `reporting_summaries`."""

    def __init__(
        self, service_module: ModuleType, grpc_module: ModuleType, status_message: type[Any]
    ) -> None:
        (service,) = service_module.DESCRIPTOR.services_by_name.values()
        self.service_name: str = service.full_name
        self.status_message = status_message
        try:
            self._find(service, grpc_module, status_message)
        except (KeyError, AttributeError, TypeError) as missing:
            raise ValueError(
                f"{service.full_name} lacks the reading service's shape: {missing!r}"
            ) from None

    def _find(self, service: Any, grpc_module: ModuleType, status_message: type[Any]) -> None:
        self.add_to_server: Callable[[Any, Any], None] = getattr(
            grpc_module, f"add_{service.name}Servicer_to_server"
        )
        methods = service.methods_by_name
        self.ingest_response = GetMessageClass(methods["IngestReading"].output_type)
        self.stream_response = GetMessageClass(methods["IngestReadings"].output_type)
        fields = self.stream_response.DESCRIPTOR.fields_by_name
        rejection = fields["rejections"].message_type
        conflict = fields["conflicting_readings"].message_type
        outcomes: Any = self.ingest_response.DESCRIPTOR.fields_by_name["outcome"].enum_type
        self.rejection = GetMessageClass(cast(Descriptor, rejection))
        self.conflict = GetMessageClass(cast(Descriptor, conflict))
        # "accepted" → INGEST_OUTCOME_ACCEPTED's number, and so on for each outcome.
        self.outcomes: dict[str, int] = {
            value.name.removeprefix("INGEST_OUTCOME_").lower(): value.number
            for value in outcomes.values
            if value.number
        }
        if {"accepted", "duplicate", "conflict"} - set(self.outcomes):
            raise KeyError("INGEST_OUTCOME_ACCEPTED, _DUPLICATE and _CONFLICT")
        # The List RPC by its name and its answer (a Batch… RPC may answer statuses too).
        listings = [
            (method.output_type, field.name)
            for method in service.methods
            if method.name.startswith("List")
            for field in method.output_type.fields
            if field.message_type is status_message.DESCRIPTOR and field.is_repeated
        ]
        if len(listings) != 1:
            raise KeyError(f"one List RPC answering repeated {status_message.__name__}")
        (listing, self.list_field) = listings[0]
        self.list_response = GetMessageClass(listing)
        # ListReportingSummaries: its answer, a summary and a summary's time range.
        summaries = methods["ListReportingSummaries"].output_type
        self.summaries_response = GetMessageClass(summaries)
        summary = summaries.fields_by_name["reporting_summaries"].message_type
        self.reporting_summary = GetMessageClass(cast(Descriptor, summary))


@dataclass(frozen=True)
class ReadingKind:
    """One kind of reading, end to end.

    - `service`: the short name, also the database schema, the settings prefix (METER_…) and
      the migrations folder: "meter" or "vehicle".
    - `device`: what the id names, in messages and device certificates: "charger", "vehicle".
    - `columns`: the reading's values in table and staging order, after its id and read_time.
    - `readings_table`, `status_table`: the cold history and the hot newest-per-id table, in
      schema `service`; the first column of both is the id, `rules.id_fields[0]`.
    - `rules`, `validate_batch`: the explained rules and the fast path that applies them.
    - `contract`: the generated messages and registration of the kind's gRPC service.
    - `rolled_up`: the schema keeps hourly rollups of the history (`rollup_state`,
      `rollup_invalidations`): the write then marks the hours a late reading changes.
    - `rollup_trailing_us`: how much farther than the lookaround after a reading a rollup can
      depend on it (a vehicle's stored silences: up to the longest gap rollups serve).
    - `reports_continuously`: the device is expected to report all the time (a meter), not
      only in stretches (a vehicle, while it charges): what its data completeness expects.
    """

    service: str
    device: str
    columns: tuple[Column, ...]
    readings_table: str
    status_table: str
    rules: ReadingRules
    validate_batch: BatchValidator
    contract: ReadingContract
    rolled_up: bool = False
    rollup_trailing_us: int = 0
    reports_continuously: bool = False

    def __post_init__(self) -> None:
        """ValueError when the status message lacks a field the status rows fill."""
        fields = self.contract.status_message.DESCRIPTOR.fields_by_name
        missing = [
            name for name in (*self.status_fields, "timestamp", "update_time") if name not in fields
        ]
        if missing:
            raise ValueError(f"{self.service}: the status message has no field {missing}")

    @property
    def id_field(self) -> str:
        """The reading's and the status's id field, e.g. "meter_id"."""
        return self.rules.id_fields[0]

    @property
    def status_fields(self) -> tuple[str, ...]:
        """The status message's fields that a status row holds first, in order."""
        return (self.id_field, *(column.name for column in self.columns))
