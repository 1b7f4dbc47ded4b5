"""The study's gate figures: mean and quantile band read back from kd_stats.csv."""

from __future__ import annotations

from pathlib import Path

from kdnmt.study.plots import read_gate


def test_read_gate_keeps_the_band_and_the_later_value_of_a_step(tmp_path: Path) -> None:
    path = tmp_path / "kd_stats.csv"
    path.write_text("step,gate_mean,gate_std,gate_p10,gate_p90,c_minus_a,gate_min,gate_max\n"
                    "5,0.5,0.1,0.3,0.7,0.1,0.2,0.8\n"
                    "10,0.6,0.1,0.4,0.8,0.2,0.3,0.9\n"
                    "10,0.65,0.1,0.45,0.85,0.2,0.3,0.9\n")  # a resumed run wrote step 10 again
    assert read_gate(path) == [(5, 0.5, 0.3, 0.7), (10, 0.65, 0.45, 0.85)]


def test_read_gate_of_a_file_without_quantiles(tmp_path: Path) -> None:
    path = tmp_path / "kd_stats.csv"
    path.write_text("step,gate_mean,gate_std\n5,0.9,0.001\nbad,row,x\n")
    assert read_gate(path) == [(5, 0.9, None, None)]
    assert read_gate(tmp_path / "missing.csv") == []
