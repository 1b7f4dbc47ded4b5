"""kdnmt.devices: what the machine can do, read without starting anything."""

from __future__ import annotations


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path) -> None:
    from kdnmt.devices import cpu_has_native_bf16

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert cpu_has_native_bf16(str(info))
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 amx_tile amx_bf16\n")
    assert cpu_has_native_bf16(str(info))
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_vnni\n")
    assert not cpu_has_native_bf16(str(info))
    assert not cpu_has_native_bf16(str(tmp_path / "missing"))  # not Linux: say no
