"""The Sparkplug B ``Payload`` protobuf message, with descriptors built in Python (no protoc step).

Written from the Sparkplug 3.0 specification's schema (package ``org.eclipse.tahu.protobuf``,
proto2): the subset an edge node that publishes scalar metrics needs -- Payload{timestamp, metrics,
seq, uuid, body} and Metric{name, alias, timestamp, datatype, is_historical, is_transient, is_null,
one scalar value}. Field numbers and types follow the spec, so any Sparkplug B host (Ignition, a
Tahu client, a MES bridge) decodes our messages; fields we leave out (metadata, properties,
datasets, templates) are simply absent on the wire.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "org.eclipse.tahu.protobuf"

#: Sparkplug B data type codes (spec section 6.4.16) for the types we publish.
INT32, INT64, UINT32, UINT64, FLOAT, DOUBLE, BOOLEAN, STRING = 3, 4, 7, 8, 9, 10, 11, 12

_F = descriptor_pb2.FieldDescriptorProto


def _field(msg: descriptor_pb2.DescriptorProto, name: str, number: int, ftype: int,
           label: int = _F.LABEL_OPTIONAL, type_name: str | None = None, oneof: int | None = None) -> None:
    f = msg.field.add(name=name, number=number, type=ftype, label=label)
    if type_name:
        f.type_name = type_name
    if oneof is not None:
        f.oneof_index = oneof


def _build() -> tuple[type, type]:
    fd = descriptor_pb2.FileDescriptorProto(name="edge_inspector/sparkplug_b.proto", package=PACKAGE,
                                            syntax="proto2")
    payload = fd.message_type.add(name="Payload")
    metric = payload.nested_type.add(name="Metric")
    _field(metric, "name", 1, _F.TYPE_STRING)
    _field(metric, "alias", 2, _F.TYPE_UINT64)
    _field(metric, "timestamp", 3, _F.TYPE_UINT64)
    _field(metric, "datatype", 4, _F.TYPE_UINT32)
    _field(metric, "is_historical", 5, _F.TYPE_BOOL)
    _field(metric, "is_transient", 6, _F.TYPE_BOOL)
    _field(metric, "is_null", 7, _F.TYPE_BOOL)
    metric.oneof_decl.add(name="value")
    for name, number, ftype in (("int_value", 10, _F.TYPE_UINT32), ("long_value", 11, _F.TYPE_UINT64),
                                ("float_value", 12, _F.TYPE_FLOAT), ("double_value", 13, _F.TYPE_DOUBLE),
                                ("boolean_value", 14, _F.TYPE_BOOL), ("string_value", 15, _F.TYPE_STRING),
                                ("bytes_value", 16, _F.TYPE_BYTES)):
        _field(metric, name, number, ftype, oneof=0)
    _field(payload, "timestamp", 1, _F.TYPE_UINT64)
    _field(payload, "metrics", 2, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, f".{PACKAGE}.Payload.Metric")
    _field(payload, "seq", 3, _F.TYPE_UINT64)
    _field(payload, "uuid", 4, _F.TYPE_STRING)
    _field(payload, "body", 5, _F.TYPE_BYTES)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    payload_cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.Payload"))
    return payload_cls, payload_cls.Metric


Payload, Metric = _build()


def add_metric(payload, name: str, datatype: int, value, timestamp: int | None = None,
               with_datatype: bool = True) -> None:
    """Append a metric with the value field that matches ``datatype``; None becomes ``is_null``.

    ``with_datatype=False`` for NDATA/DDATA: Sparkplug 3.0 says the datatype SHOULD NOT repeat
    there (the birth declared it).
    """
    m = payload.metrics.add(name=name)
    if with_datatype:
        m.datatype = datatype
    if timestamp is not None:
        m.timestamp = timestamp
    if value is None:
        m.is_null = True
    elif datatype in (INT32, UINT32):
        m.int_value = int(value) & 0xFFFFFFFF
    elif datatype in (INT64, UINT64):
        m.long_value = int(value) & 0xFFFFFFFFFFFFFFFF
    elif datatype == FLOAT:
        m.float_value = float(value)
    elif datatype == DOUBLE:
        m.double_value = float(value)
    elif datatype == BOOLEAN:
        m.boolean_value = bool(value)
    elif datatype == STRING:
        m.string_value = str(value)
    else:
        raise ValueError(f"sparkplug metric {name!r}: unsupported datatype {datatype}")


def metric_value(m):
    """The Python value of a decoded metric (None when is_null)."""
    if m.is_null:
        return None
    which = m.WhichOneof("value")
    return getattr(m, which) if which else None
