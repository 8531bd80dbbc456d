"""Whether this CPU has an 8-bit dot product (VNNI): without one, OpenVINO's INT8 kernels add each pair of u8 x s8
products in saturating 16 bits (runtime.quantise keeps weights to 7 bits for them) and run no faster than float32
(an AVX2-only AMD EPYC: the demo's INT8 artefact 48.6 images/s against 57.1 in float32; README, "A line PC without
torch")."""

from __future__ import annotations

from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
DOT_PRODUCT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})  # Linux's names for x86's VNNI and AMX


def has_int8_dot_product(cpuinfo: str) -> bool | None:
    """Whether the x86 `flags` line of /proc/cpuinfo text names a VNNI or AMX flag; None where it has no such line
    (another architecture, or no /proc)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return not DOT_PRODUCT_FLAGS.isdisjoint(value.split())
    return None


def this_cpu_has_int8_dot_product() -> bool | None:
    """has_int8_dot_product of this machine's /proc/cpuinfo; None where it cannot be read."""
    try:
        return has_int8_dot_product(CPUINFO.read_text())
    except OSError:
        return None
