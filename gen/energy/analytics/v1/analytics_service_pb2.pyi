import datetime

from energy.analytics.v1 import analytics_pb2 as _analytics_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetVehiclePerformanceRequest(_message.Message):
    __slots__ = ("vehicle_id", "end_time", "window")
    VEHICLE_ID_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    vehicle_id: str
    end_time: _timestamp_pb2.Timestamp
    window: _duration_pb2.Duration
    def __init__(self, vehicle_id: _Optional[str] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ListChargerEfficienciesRequest(_message.Message):
    __slots__ = ("end_time", "window", "charger_ids", "page_size", "page_token")
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    CHARGER_IDS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    end_time: _timestamp_pb2.Timestamp
    window: _duration_pb2.Duration
    charger_ids: _containers.RepeatedScalarFieldContainer[str]
    page_size: int
    page_token: str
    def __init__(self, end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., charger_ids: _Optional[_Iterable[str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListChargerEfficienciesResponse(_message.Message):
    __slots__ = ("charger_efficiencies", "next_page_token", "start_time", "end_time", "fleet_median_efficiency", "fleet_efficiency_mad", "total_size")
    CHARGER_EFFICIENCIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    FLEET_MEDIAN_EFFICIENCY_FIELD_NUMBER: _ClassVar[int]
    FLEET_EFFICIENCY_MAD_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    charger_efficiencies: _containers.RepeatedCompositeFieldContainer[_analytics_pb2.ChargerEfficiency]
    next_page_token: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    fleet_median_efficiency: float
    fleet_efficiency_mad: float
    total_size: int
    def __init__(self, charger_efficiencies: _Optional[_Iterable[_Union[_analytics_pb2.ChargerEfficiency, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., fleet_median_efficiency: _Optional[float] = ..., fleet_efficiency_mad: _Optional[float] = ..., total_size: _Optional[int] = ...) -> None: ...

class GetDataCompletenessRequest(_message.Message):
    __slots__ = ("end_time", "window", "page_size", "page_token")
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    end_time: _timestamp_pb2.Timestamp
    window: _duration_pb2.Duration
    page_size: int
    page_token: str
    def __init__(self, end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...
