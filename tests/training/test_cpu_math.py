"""MKL's code path on AMD CPUs: set for the engine's children on AMD x86-64 only, never over the user's value."""

from __future__ import annotations

import pytest

from ocr_tasks.training import engine
from ocr_tasks.training.cpu_math import math_library_env


def _cpuinfo(tmp_path, vendor: str):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nvendor_id\t: {vendor}\nmodel name\t: some cpu\n\nprocessor\t: 1\n"
                    f"vendor_id\t: {vendor}\n", encoding="ascii")
    return path


def test_amd_x86_gets_the_avx2_path_and_intel_or_arm_nothing(tmp_path):
    assert math_library_env(_cpuinfo(tmp_path, "AuthenticAMD"), "x86_64") == {"MKL_DEBUG_CPU_TYPE": "5"}
    assert math_library_env(_cpuinfo(tmp_path, "GenuineIntel"), "x86_64") == {}
    assert math_library_env(_cpuinfo(tmp_path, "AuthenticAMD"), "aarch64") == {}
    assert math_library_env(tmp_path / "absent", "x86_64") == {}


@pytest.mark.parametrize("user_value", [None, "0"])
def test_engine_children_get_it_unless_the_user_set_it(monkeypatch, user_value):
    monkeypatch.setattr(engine, "math_library_env", lambda: {"MKL_DEBUG_CPU_TYPE": "5"})
    if user_value is None:
        monkeypatch.delenv("MKL_DEBUG_CPU_TYPE", raising=False)
    else:
        monkeypatch.setenv("MKL_DEBUG_CPU_TYPE", user_value)
    assert engine._child_env(None)["MKL_DEBUG_CPU_TYPE"] == (user_value or "5")
