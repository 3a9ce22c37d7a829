"""inference.json written in paddle 3.0's form: only the format version and the widened pooling attributes change."""

import json

import pytest

from ocr_tasks.training.pir_compat import NotPortable, write_as_paddle_3_0


def _attr(name, kind, values):
    return {"AT": {"#": "0.a_array", "D": [{"#": kind, "D": v} for v in values]}, "N": name}


def _program(version=3, stride=2):
    """The shape of a paddle 3.2 export: a conv (int32 attributes) and a pool2d (int64 strides/paddings)."""
    conv = {"#": "1.conv2d", "A": [_attr("strides", "0.a_i32", [1, 1]), _attr("paddings", "0.a_i32", [1, 1])],
            "I": [{"%": 3}], "O": [{"%": 4}]}
    pool = {"#": "1.pool2d", "A": [_attr("strides", "0.a_i64", [stride, stride]),
                                   _attr("paddings", "0.a_i64", [0, 0]),
                                   {"AT": {"#": "0.a_str", "D": "avg"}, "N": "pooling_type"}],
            "I": [{"%": 4}], "O": [{"%": 5}]}
    scale = {"#": "1.scale", "A": [_attr("bias", "0.a_i64", [7])], "I": [{"%": 5}], "O": [{"%": 6}]}
    return {"base_code": {"magic": "pir", "trainable": True, "version": version},
            "program": {"regions": [{"#": "region_0", "blocks": [{"#": "block_0", "args": [],
                                                                   "ops": [conv, pool, scale]}]}]}}


def test_pool_attributes_narrowed_version_1_everything_else_unchanged(tmp_path):
    path = tmp_path / "inference.json"
    original = _program()
    path.write_text(json.dumps(original))
    assert write_as_paddle_3_0(path) == 4
    written = json.loads(path.read_text())
    assert written["base_code"] == {"magic": "pir", "trainable": True, "version": 1}
    conv, pool, scale = written["program"]["regions"][0]["blocks"][0]["ops"]
    assert [e["#"] for a in pool["A"][:2] for e in a["AT"]["D"]] == ["0.a_i32"] * 4
    assert [e["D"] for a in pool["A"][:2] for e in a["AT"]["D"]] == [2, 2, 0, 0]
    assert pool["A"][2] == original["program"]["regions"][0]["blocks"][0]["ops"][1]["A"][2]
    assert conv == original["program"]["regions"][0]["blocks"][0]["ops"][0]
    assert scale == original["program"]["regions"][0]["blocks"][0]["ops"][2]   # only the widened ops' attributes
    assert not list(tmp_path.glob("*.tmp"))
    assert write_as_paddle_3_0(path) == 0          # idempotent: a second pass finds nothing to narrow


def test_a_value_beyond_int32_or_a_non_pir_file_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "inference.json"
    path.write_text(json.dumps(_program(stride=2 ** 31)))
    before = path.read_text()
    with pytest.raises(NotPortable, match="pool2d.strides: 2147483648 does not fit"):
        write_as_paddle_3_0(path)
    assert path.read_text() == before
    path.write_text(json.dumps({"program": {}}))
    with pytest.raises(NotPortable, match="not a PIR program"):
        write_as_paddle_3_0(path)
