import datetime

from energy.vehicle.v1 import vehicle_pb2 as _vehicle_pb2
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
    reading: _vehicle_pb2.VehicleReading
    def __init__(self, reading: _Optional[_Union[_vehicle_pb2.VehicleReading, _Mapping]] = ...) -> None: ...

class IngestReadingResponse(_message.Message):
    __slots__ = ("duplicate", "outcome", "conflict")
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    CONFLICT_FIELD_NUMBER: _ClassVar[int]
    duplicate: bool
    outcome: IngestOutcome
    conflict: _vehicle_pb2.ReadingConflict
    def __init__(self, duplicate: _Optional[bool] = ..., outcome: _Optional[_Union[IngestOutcome, str]] = ..., conflict: _Optional[_Union[_vehicle_pb2.ReadingConflict, _Mapping]] = ...) -> None: ...

class IngestReadingsRequest(_message.Message):
    __slots__ = ("readings",)
    READINGS_FIELD_NUMBER: _ClassVar[int]
    readings: _containers.RepeatedCompositeFieldContainer[_vehicle_pb2.VehicleReading]
    def __init__(self, readings: _Optional[_Iterable[_Union[_vehicle_pb2.VehicleReading, _Mapping]]] = ...) -> None: ...

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
    rejections: _containers.RepeatedCompositeFieldContainer[_vehicle_pb2.ReadingRejection]
    conflicts: int
    conflicting_readings: _containers.RepeatedCompositeFieldContainer[_vehicle_pb2.ReadingConflict]
    def __init__(self, accepted: _Optional[int] = ..., duplicates: _Optional[int] = ..., rejected: _Optional[int] = ..., rejections: _Optional[_Iterable[_Union[_vehicle_pb2.ReadingRejection, _Mapping]]] = ..., conflicts: _Optional[int] = ..., conflicting_readings: _Optional[_Iterable[_Union[_vehicle_pb2.ReadingConflict, _Mapping]]] = ...) -> None: ...

class ListVehicleStatusesRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListVehicleStatusesResponse(_message.Message):
    __slots__ = ("vehicle_statuses", "next_page_token")
    VEHICLE_STATUSES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    vehicle_statuses: _containers.RepeatedCompositeFieldContainer[_vehicle_pb2.VehicleStatus]
    next_page_token: str
    def __init__(self, vehicle_statuses: _Optional[_Iterable[_Union[_vehicle_pb2.VehicleStatus, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetVehicleStatusRequest(_message.Message):
    __slots__ = ("vehicle_id",)
    VEHICLE_ID_FIELD_NUMBER: _ClassVar[int]
    vehicle_id: str
    def __init__(self, vehicle_id: _Optional[str] = ...) -> None: ...

class ListChargingSessionsRequest(_message.Message):
    __slots__ = ("vehicle_id", "start_time", "end_time", "session_gap")
    VEHICLE_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    SESSION_GAP_FIELD_NUMBER: _ClassVar[int]
    vehicle_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    session_gap: _duration_pb2.Duration
    def __init__(self, vehicle_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., session_gap: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ListChargingSessionsResponse(_message.Message):
    __slots__ = ("sessions",)
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[_vehicle_pb2.ChargingSession]
    def __init__(self, sessions: _Optional[_Iterable[_Union[_vehicle_pb2.ChargingSession, _Mapping]]] = ...) -> None: ...

class ListChargerSessionsRequest(_message.Message):
    __slots__ = ("charger_ids", "start_time", "end_time", "session_gap", "ranges", "excluded_vehicle_id")
    CHARGER_IDS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    SESSION_GAP_FIELD_NUMBER: _ClassVar[int]
    RANGES_FIELD_NUMBER: _ClassVar[int]
    EXCLUDED_VEHICLE_ID_FIELD_NUMBER: _ClassVar[int]
    charger_ids: _containers.RepeatedScalarFieldContainer[str]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    session_gap: _duration_pb2.Duration
    ranges: _containers.RepeatedCompositeFieldContainer[ChargerTimeRange]
    excluded_vehicle_id: str
    def __init__(self, charger_ids: _Optional[_Iterable[str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., session_gap: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., ranges: _Optional[_Iterable[_Union[ChargerTimeRange, _Mapping]]] = ..., excluded_vehicle_id: _Optional[str] = ...) -> None: ...

class ChargerTimeRange(_message.Message):
    __slots__ = ("charger_id", "start_time", "end_time")
    CHARGER_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    charger_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, charger_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListChargerSessionsResponse(_message.Message):
    __slots__ = ("sessions",)
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[_vehicle_pb2.ChargingSession]
    def __init__(self, sessions: _Optional[_Iterable[_Union[_vehicle_pb2.ChargingSession, _Mapping]]] = ...) -> None: ...

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
    reporting_summaries: _containers.RepeatedCompositeFieldContainer[_vehicle_pb2.ReportingSummary]
    next_page_token: str
    def __init__(self, reporting_summaries: _Optional[_Iterable[_Union[_vehicle_pb2.ReportingSummary, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
