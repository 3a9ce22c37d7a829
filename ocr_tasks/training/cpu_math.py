"""CPU math-library settings for the engine's child processes.

Paddle's CPU kernels call Intel MKL (the ``mklml`` paddle bundles). On AMD processors MKL
takes a generic code path unless told the CPU runs AVX2 code (``MKL_DEBUG_CPU_TYPE=5``).
Measured on a 2-core AMD EPYC with ``bench/train_speed.py``: the det model step went from
2.3 to 5.5 samples/s and det eval from 12 to 24 samples/s (ratios; the machine was loaded).
Set only on AMD x86-64 and only when the user has not set it: on Intel, MKL already picks
its best path, and forcing type 5 would cap AVX-512 machines at AVX2. GPU training does
not go through these kernels, so production runs are unaffected.
"""

from __future__ import annotations

import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


def math_library_env(cpuinfo: Path = CPUINFO, machine: str | None = None) -> dict[str, str]:
    """Environment defaults for MKL on this host (empty where nothing is known to help)."""
    if (machine or platform.machine()).lower() not in ("x86_64", "amd64"):
        return {}
    try:
        with cpuinfo.open(encoding="ascii", errors="replace") as lines:
            vendor = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("vendor_id")), "")
    except OSError:
        return {}
    return {"MKL_DEBUG_CPU_TYPE": "5"} if vendor == "AuthenticAMD" else {}
