"""runtime.cpu: VNNI read off /proc/cpuinfo's flags, as Linux names them on x86."""

from __future__ import annotations

import pytest

from stream_ad.runtime.cpu import CPUINFO, has_int8_dot_product, this_cpu_has_int8_dot_product

AVX2_ONLY = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse4_2 avx f16c avx2 bmi2 vaes\n"


@pytest.mark.parametrize(("flag", "expected"), [("avx512_vnni", True), ("avx_vnni", True), ("amx_int8", True),
                                                ("avx512f", False), ("avx_vnni_int8x", False)])
def test_a_vnni_or_amx_flag_is_an_int8_dot_product(flag: str, expected: bool) -> None:
    assert has_int8_dot_product(AVX2_ONLY.replace("avx2", f"avx2 {flag}")) is expected
    assert has_int8_dot_product(AVX2_ONLY) is False


def test_no_flags_line_is_unknown() -> None:
    aarch64 = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics asimddp\n"
    assert has_int8_dot_product(aarch64) is None and has_int8_dot_product("") is None


def test_this_machine_s_cpuinfo_is_read() -> None:
    text = CPUINFO.read_text() if CPUINFO.exists() else ""
    assert this_cpu_has_int8_dot_product() is has_int8_dot_product(text)
    if "flags" in text:
        assert this_cpu_has_int8_dot_product() is not None
