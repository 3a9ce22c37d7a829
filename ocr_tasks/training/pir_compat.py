"""Write an exported inference.json the way paddle 3.0 writes it, so every paddle 3.x can load it.

paddle 3.1+ serialises PIR programs as format version 3 and declares pool2d's `strides`
and `paddings` as int64 arrays. paddle 3.0.x reads only int32 there and refuses such a
model ("Type of attribute: strides is not right"). A paddle 3.0 export of the same
checkpoint differs from a 3.2 export in exactly those two places: the format version (1)
and those attributes (int32). Newer paddles load version-1 programs through their own
compatibility patches, which widen the attributes again. So this pass writes version 1
with int32 pooling attributes; nothing else in the program, and no weight, changes.

Verified on the pipeline's det and rec exports under paddle 3.0.0, 3.1.1, 3.2.2 and 3.3.1
(bench/consumer_matrix.py); the infra validation (ocr_tasks/release/infra_validation.py)
checks every export in the configured consumer runtimes before it can be published.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

PADDLE_3_0_FORMAT = 1
# op -> attributes paddle 3.1+ widened from int32 to int64 arrays
WIDENED_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "pool2d": ("strides", "paddings"),
    "pool3d": ("strides", "paddings"),
    "max_pool2d_with_index": ("strides", "paddings"),
    "max_pool3d_with_index": ("strides", "paddings"),
}
_INT32 = range(-(2 ** 31), 2 ** 31)


class NotPortable(ValueError):
    """The program cannot be written in paddle 3.0's form (a value beyond int32, an unknown format)."""


def write_as_paddle_3_0(inference_json: Path) -> int:
    """Rewrite `inference_json` in place (atomically); the number of attribute values narrowed."""
    path = Path(inference_json)
    program = json.loads(path.read_text(encoding="utf-8"))
    base = program.get("base_code") if isinstance(program, dict) else None
    if not isinstance(base, dict) or base.get("magic") != "pir" or not isinstance(base.get("version"), int):
        raise NotPortable(f"{path}: not a PIR program (no base_code.magic 'pir' with a version)")
    narrowed = _narrow(program.get("program"), path)
    base["version"] = min(base["version"], PADDLE_3_0_FORMAT)
    tmp = path.with_name(path.name + ".tmp")
    # paddle writes it compact; so does this (a det program is a few MB)
    tmp.write_text(json.dumps(program, separators=(",", ":"), ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)
    return narrowed


def _narrow(node: Any, path: Path) -> int:
    count = 0
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            op = str(item.get("#", "")).rpartition(".")[2]
            names = WIDENED_ATTRIBUTES.get(op, ())
            for attribute in item.get("A", []) if names else []:
                if isinstance(attribute, dict) and attribute.get("N") in names:
                    count += _narrow_array(attribute.get("AT"), f"{path}: {op}.{attribute['N']}")
            stack.extend(v for v in item.values() if isinstance(v, (list, dict)))
    return count


def _narrow_array(value: Any, where: str) -> int:
    if not isinstance(value, dict) or value.get("#") != "0.a_array":
        return 0
    count = 0
    for element in value.get("D", []):
        if isinstance(element, dict) and element.get("#") == "0.a_i64":
            if element.get("D") not in _INT32:
                raise NotPortable(f"{where}: {element.get('D')} does not fit paddle 3.0's int32")
            element["#"] = "0.a_i32"
            count += 1
    return count
