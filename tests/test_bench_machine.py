"""Every benchmark prints the machine beside its table: CPU model, cores, vector / int8 flags."""

from __future__ import annotations

from ssdlite.apps.bench.machine import cpu_description


def test_cpu_description_reads_model_and_vector_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
        "flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_vnni amx_tile amx_int8 ht\n\n"
        "processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: fpu\n"
    )
    text = cpu_description(info)
    model, cores, flags = text.split(" | ")
    assert model == "Intel(R) Xeon(R) Platinum 8480+" and int(cores.split()[0]) >= 1
    assert flags == "sse4_2 avx avx2 fma avx512f avx512_vnni amx_tile amx_int8"  # the first CPU's flags, known ones only


def test_cpu_description_without_cpuinfo(tmp_path):
    assert cpu_description(tmp_path / "absent").endswith("no vector flags read")
