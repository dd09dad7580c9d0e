import datetime

from energy.meter.v1 import meter_pb2 as _meter_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IngestOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INGEST_OUTCOME_UNSPECIFIED: _ClassVar[IngestOutcome]
    INGEST_OUTCOME_ACCEPTED: _ClassVar[IngestOutcome]
    INGEST_OUTCOME_DUPLICATE: _ClassVar[IngestOutcome]
    INGEST_OUTCOME_CONFLICT: _ClassVar[IngestOutcome]
INGEST_OUTCOME_UNSPECIFIED: IngestOutcome
INGEST_OUTCOME_ACCEPTED: IngestOutcome
INGEST_OUTCOME_DUPLICATE: IngestOutcome
INGEST_OUTCOME_CONFLICT: IngestOutcome

class IngestReadingRequest(_message.Message):
    __slots__ = ("reading",)
    READING_FIELD_NUMBER: _ClassVar[int]
    reading: _meter_pb2.MeterReading
    def __init__(self, reading: _Optional[_Union[_meter_pb2.MeterReading, _Mapping]] = ...) -> None: ...

class IngestReadingResponse(_message.Message):
    __slots__ = ("duplicate", "outcome", "conflict")
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    CONFLICT_FIELD_NUMBER: _ClassVar[int]
    duplicate: bool
    outcome: IngestOutcome
    conflict: _meter_pb2.ReadingConflict
    def __init__(self, duplicate: _Optional[bool] = ..., outcome: _Optional[_Union[IngestOutcome, str]] = ..., conflict: _Optional[_Union[_meter_pb2.ReadingConflict, _Mapping]] = ...) -> None: ...

class IngestReadingsRequest(_message.Message):
    __slots__ = ("readings",)
    READINGS_FIELD_NUMBER: _ClassVar[int]
    readings: _containers.RepeatedCompositeFieldContainer[_meter_pb2.MeterReading]
    def __init__(self, readings: _Optional[_Iterable[_Union[_meter_pb2.MeterReading, _Mapping]]] = ...) -> None: ...

class IngestReadingsResponse(_message.Message):
    __slots__ = ("accepted", "duplicates", "rejected", "rejections", "conflicts", "conflicting_readings")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    CONFLICTS_FIELD_NUMBER: _ClassVar[int]
    CONFLICTING_READINGS_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    duplicates: int
    rejected: int
    rejections: _containers.RepeatedCompositeFieldContainer[_meter_pb2.ReadingRejection]
    conflicts: int
    conflicting_readings: _containers.RepeatedCompositeFieldContainer[_meter_pb2.ReadingConflict]
    def __init__(self, accepted: _Optional[int] = ..., duplicates: _Optional[int] = ..., rejected: _Optional[int] = ..., rejections: _Optional[_Iterable[_Union[_meter_pb2.ReadingRejection, _Mapping]]] = ..., conflicts: _Optional[int] = ..., conflicting_readings: _Optional[_Iterable[_Union[_meter_pb2.ReadingConflict, _Mapping]]] = ...) -> None: ...

class ListChargerStatusesRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListChargerStatusesResponse(_message.Message):
    __slots__ = ("charger_statuses", "next_page_token")
    CHARGER_STATUSES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    charger_statuses: _containers.RepeatedCompositeFieldContainer[_meter_pb2.ChargerStatus]
    next_page_token: str
    def __init__(self, charger_statuses: _Optional[_Iterable[_Union[_meter_pb2.ChargerStatus, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetChargerStatusRequest(_message.Message):
    __slots__ = ("meter_id",)
    METER_ID_FIELD_NUMBER: _ClassVar[int]
    meter_id: str
    def __init__(self, meter_id: _Optional[str] = ...) -> None: ...

class SummarizeConsumptionRequest(_message.Message):
    __slots__ = ("intervals",)
    INTERVALS_FIELD_NUMBER: _ClassVar[int]
    intervals: _containers.RepeatedCompositeFieldContainer[_meter_pb2.ConsumptionInterval]
    def __init__(self, intervals: _Optional[_Iterable[_Union[_meter_pb2.ConsumptionInterval, _Mapping]]] = ...) -> None: ...

class SummarizeConsumptionResponse(_message.Message):
    __slots__ = ("summaries",)
    SUMMARIES_FIELD_NUMBER: _ClassVar[int]
    summaries: _containers.RepeatedCompositeFieldContainer[_meter_pb2.ConsumptionSummary]
    def __init__(self, summaries: _Optional[_Iterable[_Union[_meter_pb2.ConsumptionSummary, _Mapping]]] = ...) -> None: ...

class AttributeConsumptionRequest(_message.Message):
    __slots__ = ("sessions", "other_sessions", "start_time", "end_time")
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    OTHER_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[_meter_pb2.SessionSpan]
    other_sessions: _containers.RepeatedCompositeFieldContainer[_meter_pb2.SessionSpan]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, sessions: _Optional[_Iterable[_Union[_meter_pb2.SessionSpan, _Mapping]]] = ..., other_sessions: _Optional[_Iterable[_Union[_meter_pb2.SessionSpan, _Mapping]]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AttributeConsumptionResponse(_message.Message):
    __slots__ = ("consumptions",)
    CONSUMPTIONS_FIELD_NUMBER: _ClassVar[int]
    consumptions: _containers.RepeatedCompositeFieldContainer[_meter_pb2.SessionConsumption]
    def __init__(self, consumptions: _Optional[_Iterable[_Union[_meter_pb2.SessionConsumption, _Mapping]]] = ...) -> None: ...

class ListReportingSummariesRequest(_message.Message):
    __slots__ = ("start_time", "end_time", "gap", "page_size", "page_token")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    GAP_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    gap: _duration_pb2.Duration
    page_size: int
    page_token: str
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., gap: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListReportingSummariesResponse(_message.Message):
    __slots__ = ("reporting_summaries", "next_page_token")
    REPORTING_SUMMARIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    reporting_summaries: _containers.RepeatedCompositeFieldContainer[_meter_pb2.ReportingSummary]
    next_page_token: str
    def __init__(self, reporting_summaries: _Optional[_Iterable[_Union[_meter_pb2.ReportingSummary, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
