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


def test_auto_precision_is_bf16_only_on_a_cpu_that_has_it(tmp_path) -> None:
    from kdnmt.devices import resolve_precision

    native, emulated = tmp_path / "native", tmp_path / "emulated"
    native.write_text("flags\t\t: fpu avx2 avx512f avx512_bf16\n")
    emulated.write_text("flags\t\t: fpu avx2\n")
    assert resolve_precision("auto", "cpu", str(native)) == "bf16"
    assert resolve_precision("auto", "cpu", str(emulated)) == "fp32"
    assert resolve_precision("auto", "cuda", str(native)) == "fp32"  # the GPU has its own
    for explicit in ("fp32", "bf16"):  # an explicit choice is the user's, kept as given
        assert resolve_precision(explicit, "cpu", str(emulated)) == explicit


def test_cpu_identity_names_the_model_and_the_kernel_flags_only(tmp_path) -> None:
    from kdnmt.devices import cpu_identity

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Example CPU 9000\n"
                    "flags\t\t: fpu sse4_2 avx2 fma amx_bf16 lahf_lm\n\n"
                    "processor\t: 1\nmodel name\t: Example CPU 9000\nflags\t\t: fpu\n")
    identity = cpu_identity(str(info))
    assert identity["cpu"] == "Example CPU 9000"
    assert identity["flags"] == ["sse4_2", "avx2", "fma", "amx_bf16"]  # the first CPU's
    assert cpu_identity(str(tmp_path / "missing"))["flags"] == []
