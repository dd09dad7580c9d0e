import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VehicleReading(_message.Message):
    __slots__ = ("vehicle_id", "charger_id", "soc", "kwh_delivered_dc", "battery_temp", "timestamp", "kwh_delivered_dc_register")
    VEHICLE_ID_FIELD_NUMBER: _ClassVar[int]
    CHARGER_ID_FIELD_NUMBER: _ClassVar[int]
    SOC_FIELD_NUMBER: _ClassVar[int]
    KWH_DELIVERED_DC_FIELD_NUMBER: _ClassVar[int]
    BATTERY_TEMP_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    KWH_DELIVERED_DC_REGISTER_FIELD_NUMBER: _ClassVar[int]
    vehicle_id: str
    charger_id: str
    soc: float
    kwh_delivered_dc: float
    battery_temp: float
    timestamp: _timestamp_pb2.Timestamp
    kwh_delivered_dc_register: float
    def __init__(self, vehicle_id: _Optional[str] = ..., charger_id: _Optional[str] = ..., soc: _Optional[float] = ..., kwh_delivered_dc: _Optional[float] = ..., battery_temp: _Optional[float] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kwh_delivered_dc_register: _Optional[float] = ...) -> None: ...

class VehicleStatus(_message.Message):
    __slots__ = ("vehicle_id", "charger_id", "soc", "kwh_delivered_dc", "battery_temp", "timestamp", "update_time", "kwh_delivered_dc_register")
    VEHICLE_ID_FIELD_NUMBER: _ClassVar[int]
    CHARGER_ID_FIELD_NUMBER: _ClassVar[int]
    SOC_FIELD_NUMBER: _ClassVar[int]
    KWH_DELIVERED_DC_FIELD_NUMBER: _ClassVar[int]
    BATTERY_TEMP_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    KWH_DELIVERED_DC_REGISTER_FIELD_NUMBER: _ClassVar[int]
    vehicle_id: str
    charger_id: str
    soc: float
    kwh_delivered_dc: float
    battery_temp: float
    timestamp: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    kwh_delivered_dc_register: float
    def __init__(self, vehicle_id: _Optional[str] = ..., charger_id: _Optional[str] = ..., soc: _Optional[float] = ..., kwh_delivered_dc: _Optional[float] = ..., battery_temp: _Optional[float] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kwh_delivered_dc_register: _Optional[float] = ...) -> None: ...

class ReadingConflict(_message.Message):
    __slots__ = ("index", "field", "description")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    index: int
    field: str
    description: str
    def __init__(self, index: _Optional[int] = ..., field: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class ReadingRejection(_message.Message):
    __slots__ = ("index", "field", "description")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    index: int
    field: str
    description: str
    def __init__(self, index: _Optional[int] = ..., field: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class ChargingSession(_message.Message):
    __slots__ = ("charger_id", "start_time", "end_time", "kwh_delivered_dc", "reading_count", "battery_temp_sum", "battery_temp_count", "unknown_energy_count", "vehicle_id", "first_reading_time", "last_reading_time")
    CHARGER_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    KWH_DELIVERED_DC_FIELD_NUMBER: _ClassVar[int]
    READING_COUNT_FIELD_NUMBER: _ClassVar[int]
    BATTERY_TEMP_SUM_FIELD_NUMBER: _ClassVar[int]
    BATTERY_TEMP_COUNT_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_ENERGY_COUNT_FIELD_NUMBER: _ClassVar[int]
    VEHICLE_ID_FIELD_NUMBER: _ClassVar[int]
    FIRST_READING_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_READING_TIME_FIELD_NUMBER: _ClassVar[int]
    charger_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    kwh_delivered_dc: float
    reading_count: int
    battery_temp_sum: float
    battery_temp_count: int
    unknown_energy_count: int
    vehicle_id: str
    first_reading_time: _timestamp_pb2.Timestamp
    last_reading_time: _timestamp_pb2.Timestamp
    def __init__(self, charger_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kwh_delivered_dc: _Optional[float] = ..., reading_count: _Optional[int] = ..., battery_temp_sum: _Optional[float] = ..., battery_temp_count: _Optional[int] = ..., unknown_energy_count: _Optional[int] = ..., vehicle_id: _Optional[str] = ..., first_reading_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_reading_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReportingSummary(_message.Message):
    __slots__ = ("vehicle_id", "received_count", "usual_interval", "expected_count", "gaps", "conflict_count", "first_reading_time", "last_reading_time", "charger_ids", "charger_overlaps")
    VEHICLE_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_COUNT_FIELD_NUMBER: _ClassVar[int]
    USUAL_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_COUNT_FIELD_NUMBER: _ClassVar[int]
    GAPS_FIELD_NUMBER: _ClassVar[int]
    CONFLICT_COUNT_FIELD_NUMBER: _ClassVar[int]
    FIRST_READING_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_READING_TIME_FIELD_NUMBER: _ClassVar[int]
    CHARGER_IDS_FIELD_NUMBER: _ClassVar[int]
    CHARGER_OVERLAPS_FIELD_NUMBER: _ClassVar[int]
    vehicle_id: str
    received_count: int
    usual_interval: _duration_pb2.Duration
    expected_count: int
    gaps: _containers.RepeatedCompositeFieldContainer[TimeRange]
    conflict_count: int
    first_reading_time: _timestamp_pb2.Timestamp
    last_reading_time: _timestamp_pb2.Timestamp
    charger_ids: _containers.RepeatedScalarFieldContainer[str]
    charger_overlaps: _containers.RepeatedCompositeFieldContainer[ChargerOverlap]
    def __init__(self, vehicle_id: _Optional[str] = ..., received_count: _Optional[int] = ..., usual_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., expected_count: _Optional[int] = ..., gaps: _Optional[_Iterable[_Union[TimeRange, _Mapping]]] = ..., conflict_count: _Optional[int] = ..., first_reading_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_reading_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., charger_ids: _Optional[_Iterable[str]] = ..., charger_overlaps: _Optional[_Iterable[_Union[ChargerOverlap, _Mapping]]] = ...) -> None: ...

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
