import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class QualityFlag(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QUALITY_FLAG_UNSPECIFIED: _ClassVar[QualityFlag]
    QUALITY_FLAG_METER_DATA_MISSING: _ClassVar[QualityFlag]
    QUALITY_FLAG_METER_DATA_PARTIAL: _ClassVar[QualityFlag]
    QUALITY_FLAG_CONCURRENT_SESSIONS: _ClassVar[QualityFlag]
    QUALITY_FLAG_IMPLAUSIBLE_METER_DATA: _ClassVar[QualityFlag]
    QUALITY_FLAG_VEHICLE_ON_TWO_CHARGERS: _ClassVar[QualityFlag]
    QUALITY_FLAG_EFFICIENCY_OUT_OF_RANGE: _ClassVar[QualityFlag]

class OutlierReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTLIER_REASON_UNSPECIFIED: _ClassVar[OutlierReason]
    OUTLIER_REASON_BELOW_FLEET: _ClassVar[OutlierReason]
    OUTLIER_REASON_DROPPED: _ClassVar[OutlierReason]
QUALITY_FLAG_UNSPECIFIED: QualityFlag
QUALITY_FLAG_METER_DATA_MISSING: QualityFlag
QUALITY_FLAG_METER_DATA_PARTIAL: QualityFlag
QUALITY_FLAG_CONCURRENT_SESSIONS: QualityFlag
QUALITY_FLAG_IMPLAUSIBLE_METER_DATA: QualityFlag
QUALITY_FLAG_VEHICLE_ON_TWO_CHARGERS: QualityFlag
QUALITY_FLAG_EFFICIENCY_OUT_OF_RANGE: QualityFlag
OUTLIER_REASON_UNSPECIFIED: OutlierReason
OUTLIER_REASON_BELOW_FLEET: OutlierReason
OUTLIER_REASON_DROPPED: OutlierReason

class VehiclePerformance(_message.Message):
    __slots__ = ("vehicle_id", "start_time", "end_time", "total_energy_consumed_ac", "total_energy_delivered_dc", "efficiency_ratio", "energy_loss_kwh", "avg_battery_temperature", "data_points", "meter_data_points", "sessions", "ac_coverage", "quality_flags")
    VEHICLE_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    TOTAL_ENERGY_CONSUMED_AC_FIELD_NUMBER: _ClassVar[int]
    TOTAL_ENERGY_DELIVERED_DC_FIELD_NUMBER: _ClassVar[int]
    EFFICIENCY_RATIO_FIELD_NUMBER: _ClassVar[int]
    ENERGY_LOSS_KWH_FIELD_NUMBER: _ClassVar[int]
    AVG_BATTERY_TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    DATA_POINTS_FIELD_NUMBER: _ClassVar[int]
    METER_DATA_POINTS_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    AC_COVERAGE_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FLAGS_FIELD_NUMBER: _ClassVar[int]
    vehicle_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    total_energy_consumed_ac: float
    total_energy_delivered_dc: float
    efficiency_ratio: float
    energy_loss_kwh: float
    avg_battery_temperature: float
    data_points: int
    meter_data_points: int
    sessions: _containers.RepeatedCompositeFieldContainer[SessionPerformance]
    ac_coverage: float
    quality_flags: _containers.RepeatedScalarFieldContainer[QualityFlag]
    def __init__(self, vehicle_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., total_energy_consumed_ac: _Optional[float] = ..., total_energy_delivered_dc: _Optional[float] = ..., efficiency_ratio: _Optional[float] = ..., energy_loss_kwh: _Optional[float] = ..., avg_battery_temperature: _Optional[float] = ..., data_points: _Optional[int] = ..., meter_data_points: _Optional[int] = ..., sessions: _Optional[_Iterable[_Union[SessionPerformance, _Mapping]]] = ..., ac_coverage: _Optional[float] = ..., quality_flags: _Optional[_Iterable[_Union[QualityFlag, str]]] = ...) -> None: ...

class SessionPerformance(_message.Message):
    __slots__ = ("charger_id", "start_time", "end_time", "energy_consumed_ac", "energy_delivered_dc", "efficiency_ratio", "energy_loss_kwh", "avg_battery_temperature", "data_points", "meter_data_points", "ac_coverage", "quality_flags")
    CHARGER_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    ENERGY_CONSUMED_AC_FIELD_NUMBER: _ClassVar[int]
    ENERGY_DELIVERED_DC_FIELD_NUMBER: _ClassVar[int]
    EFFICIENCY_RATIO_FIELD_NUMBER: _ClassVar[int]
    ENERGY_LOSS_KWH_FIELD_NUMBER: _ClassVar[int]
    AVG_BATTERY_TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    DATA_POINTS_FIELD_NUMBER: _ClassVar[int]
    METER_DATA_POINTS_FIELD_NUMBER: _ClassVar[int]
    AC_COVERAGE_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FLAGS_FIELD_NUMBER: _ClassVar[int]
    charger_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    energy_consumed_ac: float
    energy_delivered_dc: float
    efficiency_ratio: float
    energy_loss_kwh: float
    avg_battery_temperature: float
    data_points: int
    meter_data_points: int
    ac_coverage: float
    quality_flags: _containers.RepeatedScalarFieldContainer[QualityFlag]
    def __init__(self, charger_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., energy_consumed_ac: _Optional[float] = ..., energy_delivered_dc: _Optional[float] = ..., efficiency_ratio: _Optional[float] = ..., energy_loss_kwh: _Optional[float] = ..., avg_battery_temperature: _Optional[float] = ..., data_points: _Optional[int] = ..., meter_data_points: _Optional[int] = ..., ac_coverage: _Optional[float] = ..., quality_flags: _Optional[_Iterable[_Union[QualityFlag, str]]] = ...) -> None: ...

class ChargerEfficiency(_message.Message):
    __slots__ = ("charger_id", "current", "previous", "efficiency_change", "outlier_reasons")
    CHARGER_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    EFFICIENCY_CHANGE_FIELD_NUMBER: _ClassVar[int]
    OUTLIER_REASONS_FIELD_NUMBER: _ClassVar[int]
    charger_id: str
    current: ChargerFigures
    previous: ChargerFigures
    efficiency_change: float
    outlier_reasons: _containers.RepeatedScalarFieldContainer[OutlierReason]
    def __init__(self, charger_id: _Optional[str] = ..., current: _Optional[_Union[ChargerFigures, _Mapping]] = ..., previous: _Optional[_Union[ChargerFigures, _Mapping]] = ..., efficiency_change: _Optional[float] = ..., outlier_reasons: _Optional[_Iterable[_Union[OutlierReason, str]]] = ...) -> None: ...

class ChargerFigures(_message.Message):
    __slots__ = ("energy_consumed_ac", "energy_delivered_dc", "efficiency_ratio", "energy_loss_kwh", "standby_energy_kwh", "session_count", "vehicle_count", "ac_coverage", "quality_flags")
    ENERGY_CONSUMED_AC_FIELD_NUMBER: _ClassVar[int]
    ENERGY_DELIVERED_DC_FIELD_NUMBER: _ClassVar[int]
    EFFICIENCY_RATIO_FIELD_NUMBER: _ClassVar[int]
    ENERGY_LOSS_KWH_FIELD_NUMBER: _ClassVar[int]
    STANDBY_ENERGY_KWH_FIELD_NUMBER: _ClassVar[int]
    SESSION_COUNT_FIELD_NUMBER: _ClassVar[int]
    VEHICLE_COUNT_FIELD_NUMBER: _ClassVar[int]
    AC_COVERAGE_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FLAGS_FIELD_NUMBER: _ClassVar[int]
    energy_consumed_ac: float
    energy_delivered_dc: float
    efficiency_ratio: float
    energy_loss_kwh: float
    standby_energy_kwh: float
    session_count: int
    vehicle_count: int
    ac_coverage: float
    quality_flags: _containers.RepeatedScalarFieldContainer[QualityFlag]
    def __init__(self, energy_consumed_ac: _Optional[float] = ..., energy_delivered_dc: _Optional[float] = ..., efficiency_ratio: _Optional[float] = ..., energy_loss_kwh: _Optional[float] = ..., standby_energy_kwh: _Optional[float] = ..., session_count: _Optional[int] = ..., vehicle_count: _Optional[int] = ..., ac_coverage: _Optional[float] = ..., quality_flags: _Optional[_Iterable[_Union[QualityFlag, str]]] = ...) -> None: ...

class DataCompleteness(_message.Message):
    __slots__ = ("start_time", "end_time", "chargers", "vehicles", "charger_totals", "vehicle_totals", "unreported_chargers", "charger_overlaps", "next_page_token")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    CHARGERS_FIELD_NUMBER: _ClassVar[int]
    VEHICLES_FIELD_NUMBER: _ClassVar[int]
    CHARGER_TOTALS_FIELD_NUMBER: _ClassVar[int]
    VEHICLE_TOTALS_FIELD_NUMBER: _ClassVar[int]
    UNREPORTED_CHARGERS_FIELD_NUMBER: _ClassVar[int]
    CHARGER_OVERLAPS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    chargers: _containers.RepeatedCompositeFieldContainer[DeviceCompleteness]
    vehicles: _containers.RepeatedCompositeFieldContainer[DeviceCompleteness]
    charger_totals: CompletenessTotals
    vehicle_totals: CompletenessTotals
    unreported_chargers: _containers.RepeatedCompositeFieldContainer[UnreportedCharger]
    charger_overlaps: _containers.RepeatedCompositeFieldContainer[ChargerOverlap]
    next_page_token: str
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., chargers: _Optional[_Iterable[_Union[DeviceCompleteness, _Mapping]]] = ..., vehicles: _Optional[_Iterable[_Union[DeviceCompleteness, _Mapping]]] = ..., charger_totals: _Optional[_Union[CompletenessTotals, _Mapping]] = ..., vehicle_totals: _Optional[_Union[CompletenessTotals, _Mapping]] = ..., unreported_chargers: _Optional[_Iterable[_Union[UnreportedCharger, _Mapping]]] = ..., charger_overlaps: _Optional[_Iterable[_Union[ChargerOverlap, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeviceCompleteness(_message.Message):
    __slots__ = ("id", "expected_reading_count", "received_reading_count", "completeness", "usual_interval", "gaps", "conflict_count")
    ID_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_READING_COUNT_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_READING_COUNT_FIELD_NUMBER: _ClassVar[int]
    COMPLETENESS_FIELD_NUMBER: _ClassVar[int]
    USUAL_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    GAPS_FIELD_NUMBER: _ClassVar[int]
    CONFLICT_COUNT_FIELD_NUMBER: _ClassVar[int]
    id: str
    expected_reading_count: int
    received_reading_count: int
    completeness: float
    usual_interval: _duration_pb2.Duration
    gaps: _containers.RepeatedCompositeFieldContainer[TimeRange]
    conflict_count: int
    def __init__(self, id: _Optional[str] = ..., expected_reading_count: _Optional[int] = ..., received_reading_count: _Optional[int] = ..., completeness: _Optional[float] = ..., usual_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., gaps: _Optional[_Iterable[_Union[TimeRange, _Mapping]]] = ..., conflict_count: _Optional[int] = ...) -> None: ...

class CompletenessTotals(_message.Message):
    __slots__ = ("device_count", "silent_device_count", "expected_reading_count", "received_reading_count", "gap_count", "conflict_count")
    DEVICE_COUNT_FIELD_NUMBER: _ClassVar[int]
    SILENT_DEVICE_COUNT_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_READING_COUNT_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_READING_COUNT_FIELD_NUMBER: _ClassVar[int]
    GAP_COUNT_FIELD_NUMBER: _ClassVar[int]
    CONFLICT_COUNT_FIELD_NUMBER: _ClassVar[int]
    device_count: int
    silent_device_count: int
    expected_reading_count: int
    received_reading_count: int
    gap_count: int
    conflict_count: int
    def __init__(self, device_count: _Optional[int] = ..., silent_device_count: _Optional[int] = ..., expected_reading_count: _Optional[int] = ..., received_reading_count: _Optional[int] = ..., gap_count: _Optional[int] = ..., conflict_count: _Optional[int] = ...) -> None: ...

class UnreportedCharger(_message.Message):
    __slots__ = ("charger_id", "near_matches", "vehicle_ids")
    CHARGER_ID_FIELD_NUMBER: _ClassVar[int]
    NEAR_MATCHES_FIELD_NUMBER: _ClassVar[int]
    VEHICLE_IDS_FIELD_NUMBER: _ClassVar[int]
    charger_id: str
    near_matches: _containers.RepeatedScalarFieldContainer[str]
    vehicle_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, charger_id: _Optional[str] = ..., near_matches: _Optional[_Iterable[str]] = ..., vehicle_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class TimeRange(_message.Message):
    __slots__ = ("start_time", "end_time")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ChargerOverlap(_message.Message):
    __slots__ = ("vehicle_id", "charger_id", "other_charger_id", "start_time", "end_time")
    VEHICLE_ID_FIELD_NUMBER: _ClassVar[int]
    CHARGER_ID_FIELD_NUMBER: _ClassVar[int]
    OTHER_CHARGER_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    vehicle_id: str
    charger_id: str
    other_charger_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, vehicle_id: _Optional[str] = ..., charger_id: _Optional[str] = ..., other_charger_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
