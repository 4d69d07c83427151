"""`python -m bench apbwe_precision --weights DIR`: any 16kto48k directory settles the precision on a CPU."""

from __future__ import annotations

import torch

from bench import bench_apbwe_precision
from core.apbwe import write_random_checkpoint


def test_the_script_reads_a_weights_directory_and_prints_one_row_per_variant(tmp_path, capsys) -> None:
    write_random_checkpoint(tmp_path / "16kto48k", channels=8, layers=1, seed=4)
    threads = torch.get_num_threads()
    try:
        code = bench_apbwe_precision.main(
            [
                "--weights",
                str(tmp_path / "16kto48k"),
                "--seconds",
                "0.5",
                "--variants",
                "fp16,tf32",
                "--threads",
                "1",
            ]
        )
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| 16kto48k |")]
    assert code == 0, out
    assert [row.split("|")[3].strip() for row in rows] == ["fp16", "tf32"]
    assert all(row.split("|")[8].strip() == "yes" for row in rows), out
