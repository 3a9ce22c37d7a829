"""The one codec for artifacts that leave a process (Airflow XCom between tasks and workers).

A dataclass travels as `{"artifact": "<module>:<class>", "value": <its fields as JSON>}` (pydantic
dumps and validates the fields, nested dataclasses, paths and all), so the receiving task gets the
typed object back without knowing the type in advance. Only classes of this package are rebuilt:
a payload naming anything else is refused. Lists and tuples travel item by item; JSON scalars and
plain mappings as they are.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from typing import Any

PACKAGE = "ocr_tasks."
_TAG, _VALUE = "artifact", "value"


def dump(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        return {_TAG: f"{cls.__module__}:{cls.__qualname__}", _VALUE: _adapter(cls).dump_python(value, mode="json")}
    if isinstance(value, (list, tuple)):
        return [dump(item) for item in value]
    if isinstance(value, dict):
        return {str(key): dump(item) for key, item in value.items()}
    return value


def plain(value: Any) -> Any:
    """An artifact as plain JSON, untagged: what storage keeps (run.json, infra_validation.json, ...)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _adapter(type(value)).dump_python(value, mode="json")
    return value


def rebuild(cls: type, data: Any) -> Any:
    """A stored record (`plain`'s output) as the artifact it was."""
    return _adapter(cls).validate_python(data)


def load(data: Any) -> Any:
    if isinstance(data, dict) and set(data) == {_TAG, _VALUE} and isinstance(data[_TAG], str):
        return _adapter(_artifact_class(data[_TAG])).validate_python(data[_VALUE])
    if isinstance(data, (list, tuple)):
        return [load(item) for item in data]
    if isinstance(data, dict):
        return {key: load(item) for key, item in data.items()}
    return data


def _artifact_class(name: str) -> type:
    module, _, qualname = name.partition(":")
    if not module.startswith(PACKAGE) or not qualname or "." in qualname:
        raise ValueError(f"refusing to rebuild {name!r}: artifacts are dataclasses of {PACKAGE.rstrip('.')}")
    cls = getattr(importlib.import_module(module), qualname, None)
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise ValueError(f"refusing to rebuild {name!r}: not a dataclass")
    return cls


@functools.lru_cache(maxsize=None)
def _adapter(cls: type) -> Any:
    from pydantic import TypeAdapter   # imported in tasks, not when a DAG file is parsed

    return TypeAdapter(cls)
