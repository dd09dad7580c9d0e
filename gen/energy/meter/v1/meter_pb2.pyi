import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MeterReading(_message.Message):
    __slots__ = ("meter_id", "kwh_consumed_ac", "voltage", "timestamp", "kwh_consumed_ac_register")
    METER_ID_FIELD_NUMBER: _ClassVar[int]
    KWH_CONSUMED_AC_FIELD_NUMBER: _ClassVar[int]
    VOLTAGE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    KWH_CONSUMED_AC_REGISTER_FIELD_NUMBER: _ClassVar[int]
    meter_id: str
    kwh_consumed_ac: float
    voltage: float
    timestamp: _timestamp_pb2.Timestamp
    kwh_consumed_ac_register: float
    def __init__(self, meter_id: _Optional[str] = ..., kwh_consumed_ac: _Optional[float] = ..., voltage: _Optional[float] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kwh_consumed_ac_register: _Optional[float] = ...) -> None: ...

class ChargerStatus(_message.Message):
    __slots__ = ("meter_id", "kwh_consumed_ac", "voltage", "timestamp", "update_time", "kwh_consumed_ac_register")
    METER_ID_FIELD_NUMBER: _ClassVar[int]
    KWH_CONSUMED_AC_FIELD_NUMBER: _ClassVar[int]
    VOLTAGE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    KWH_CONSUMED_AC_REGISTER_FIELD_NUMBER: _ClassVar[int]
    meter_id: str
    kwh_consumed_ac: float
    voltage: float
    timestamp: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    kwh_consumed_ac_register: float
    def __init__(self, meter_id: _Optional[str] = ..., kwh_consumed_ac: _Optional[float] = ..., voltage: _Optional[float] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kwh_consumed_ac_register: _Optional[float] = ...) -> None: ...

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

class ConsumptionInterval(_message.Message):
    __slots__ = ("charger_id", "start_time", "end_time")
    CHARGER_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    charger_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, charger_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ConsumptionSummary(_message.Message):
    __slots__ = ("charger_id", "start_time", "end_time", "kwh_consumed_ac", "reading_count", "unknown_energy_count")
    CHARGER_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    KWH_CONSUMED_AC_FIELD_NUMBER: _ClassVar[int]
    READING_COUNT_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_ENERGY_COUNT_FIELD_NUMBER: _ClassVar[int]
    charger_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    kwh_consumed_ac: float
    reading_count: int
    unknown_energy_count: int
    def __init__(self, charger_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kwh_consumed_ac: _Optional[float] = ..., reading_count: _Optional[int] = ..., unknown_energy_count: _Optional[int] = ...) -> None: ...

class SessionSpan(_message.Message):
    __slots__ = ("charger_id", "start_time", "end_time", "kwh_delivered_dc")
    CHARGER_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    KWH_DELIVERED_DC_FIELD_NUMBER: _ClassVar[int]
    charger_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    kwh_delivered_dc: float
    def __init__(self, charger_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kwh_delivered_dc: _Optional[float] = ...) -> None: ...

class SessionConsumption(_message.Message):
    __slots__ = ("charger_id", "start_time", "end_time", "kwh_consumed_ac", "reading_count", "covered_duration", "implausible_reading_count", "unknown_energy_count")
    CHARGER_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    KWH_CONSUMED_AC_FIELD_NUMBER: _ClassVar[int]
    READING_COUNT_FIELD_NUMBER: _ClassVar[int]
    COVERED_DURATION_FIELD_NUMBER: _ClassVar[int]
    IMPLAUSIBLE_READING_COUNT_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_ENERGY_COUNT_FIELD_NUMBER: _ClassVar[int]
    charger_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    kwh_consumed_ac: float
    reading_count: int
    covered_duration: _duration_pb2.Duration
    implausible_reading_count: int
    unknown_energy_count: int
    def __init__(self, charger_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kwh_consumed_ac: _Optional[float] = ..., reading_count: _Optional[int] = ..., covered_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., implausible_reading_count: _Optional[int] = ..., unknown_energy_count: _Optional[int] = ...) -> None: ...

class ReportingSummary(_message.Message):
    __slots__ = ("meter_id", "received_count", "usual_interval", "expected_count", "gaps", "conflict_count", "first_reading_time", "last_reading_time")
    METER_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_COUNT_FIELD_NUMBER: _ClassVar[int]
    USUAL_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_COUNT_FIELD_NUMBER: _ClassVar[int]
    GAPS_FIELD_NUMBER: _ClassVar[int]
    CONFLICT_COUNT_FIELD_NUMBER: _ClassVar[int]
    FIRST_READING_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_READING_TIME_FIELD_NUMBER: _ClassVar[int]
    meter_id: str
    received_count: int
    usual_interval: _duration_pb2.Duration
    expected_count: int
    gaps: _containers.RepeatedCompositeFieldContainer[TimeRange]
    conflict_count: int
    first_reading_time: _timestamp_pb2.Timestamp
    last_reading_time: _timestamp_pb2.Timestamp
    def __init__(self, meter_id: _Optional[str] = ..., received_count: _Optional[int] = ..., usual_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., expected_count: _Optional[int] = ..., gaps: _Optional[_Iterable[_Union[TimeRange, _Mapping]]] = ..., conflict_count: _Optional[int] = ..., first_reading_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_reading_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class TimeRange(_message.Message):
    __slots__ = ("start_time", "end_time")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
