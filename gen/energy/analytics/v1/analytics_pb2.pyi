import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VehiclePerformance(_message.Message):
    __slots__ = ("vehicle_id", "start_time", "end_time", "total_energy_consumed_ac", "total_energy_delivered_dc", "efficiency_ratio", "energy_loss_kwh", "avg_battery_temperature", "data_points", "meter_data_points", "sessions")
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
    def __init__(self, vehicle_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., total_energy_consumed_ac: _Optional[float] = ..., total_energy_delivered_dc: _Optional[float] = ..., efficiency_ratio: _Optional[float] = ..., energy_loss_kwh: _Optional[float] = ..., avg_battery_temperature: _Optional[float] = ..., data_points: _Optional[int] = ..., meter_data_points: _Optional[int] = ..., sessions: _Optional[_Iterable[_Union[SessionPerformance, _Mapping]]] = ...) -> None: ...

class SessionPerformance(_message.Message):
    __slots__ = ("charger_id", "start_time", "end_time", "energy_consumed_ac", "energy_delivered_dc", "efficiency_ratio", "energy_loss_kwh", "avg_battery_temperature", "data_points", "meter_data_points")
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
    def __init__(self, charger_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., energy_consumed_ac: _Optional[float] = ..., energy_delivered_dc: _Optional[float] = ..., efficiency_ratio: _Optional[float] = ..., energy_loss_kwh: _Optional[float] = ..., avg_battery_temperature: _Optional[float] = ..., data_points: _Optional[int] = ..., meter_data_points: _Optional[int] = ...) -> None: ...
