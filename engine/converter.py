"""The data converter every Journeys process shares: pydantic JSON, with process-wide type adapters.

``temporalio.contrib.pydantic`` caches ``TypeAdapter``s per converter instance, but the
workflow sandbox builds a fresh payload converter for every workflow run, so each new
enrollment paid for building the ``EnrollmentInput`` schema (the whole journey plan
model) again: about 6% of the worker's CPU at 20 enrollments/s. The wire format is
unchanged (``json/plain``), so histories stay readable by either converter.
"""

from __future__ import annotations

import threading
from typing import Any

import temporalio.api.common.v1
from pydantic import TypeAdapter
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter, PydanticPayloadConverter
from temporalio.converter import DataConverter

_adapters: dict[Any, TypeAdapter[Any]] = {}
_lock = threading.Lock()
#: Type hints are a small closed set (workflow and activity signatures); this only guards
#: against an unexpected stream of distinct hints.
_MAX_ADAPTERS = 4096


def type_adapter(hint: Any) -> TypeAdapter[Any]:
    """The process-wide adapter for ``hint`` (built once; unhashable hints are not cached)."""
    try:
        found = _adapters.get(hint)
    except TypeError:
        return TypeAdapter(hint)
    if found is None:
        found = TypeAdapter(hint)
        with _lock:
            if len(_adapters) < _MAX_ADAPTERS:
                _adapters[hint] = found
    return found


class SharedAdapterJSONConverter(PydanticJSONPlainPayloadConverter):
    """Pydantic JSON with type adapters shared by every converter instance in the process."""

    def from_payload(self, payload: temporalio.api.common.v1.Payload, type_hint: type | None = None) -> Any:
        """Decode ``payload`` as ``type_hint`` (``Any`` when absent)."""
        return type_adapter(type_hint if type_hint is not None else Any).validate_json(payload.data)


class SharedAdapterPayloadConverter(PydanticPayloadConverter):
    """``PydanticPayloadConverter`` whose JSON converter shares type adapters process-wide."""

    def __init__(self) -> None:
        super().__init__()
        self.converters = {
            encoding: SharedAdapterJSONConverter() if isinstance(conv, PydanticJSONPlainPayloadConverter) else conv
            for encoding, conv in self.converters.items()
        }


data_converter = DataConverter(payload_converter_class=SharedAdapterPayloadConverter)
