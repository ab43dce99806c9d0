"""bench/fuzz_io.py: every reader's format fuzzed (``--quick``), and a reader bug is reported.

The 100,000-case figures come from a run on this machine (the note); this checks that the
script covers every format with every mutation, counts per format, and calls a crash a bug.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
FORMATS = ("aedat4", "aedat3", "aedat2", "evt2", "evt21", "evt3", "dat")


def _bench():
    spec = importlib.util.spec_from_file_location("bench_fuzz_io", REPO / "bench" / "fuzz_io.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory):
    module = _bench()
    folder = tmp_path_factory.mktemp("fuzz")
    bases = {name: str(path) for name, path in module.build_bases(folder).items()}
    module._init(bases, str(folder))
    module._STATE["entry_points"] = True
    return module


def test_quick_run_counts_every_format_and_finds_no_bug():
    run = subprocess.run([sys.executable, str(REPO / "bench" / "fuzz_io.py"), "--quick", "--workers", "1"],
                         capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    assert "other exceptions: 0 (must be 0)" in out
    for fmt in FORMATS:
        row = re.search(rf"^  {fmt} +([\d, ]+)$", out, re.M)
        assert row, f"no row for {fmt}"
        numbers = [int(v.replace(",", "")) for v in row.group(1).split()]
        assert numbers[-1] > 0 and numbers[-2] == 0  # cases read, no OTHER
    for mutation in ("header lie", "time backwards", "off geometry", "truncate", "time jump"):
        assert re.search(rf"^  {mutation} ", out, re.M), mutation


def test_every_word_mutation_changes_every_generated_base(fuzz):
    for name in ("small_evt2.raw", "small_evt21.raw", "small_evt3.raw", "small_v1.dat", "small_v2.dat",
                 "small_davis346.aedat2"):
        data, _, _, meta = fuzz._STATE["bases"][name]
        for k, kind in enumerate(fuzz.WORD_MUTATIONS):
            changed = [fuzz.mutate(data, name, k + len(fuzz.WORD_MUTATIONS) * r, None, meta)[0] != data
                       for r in range(6)]
            assert any(changed), (name, kind)
        assert fuzz.mutate(data, name, 3, None, meta) == fuzz.mutate(data, name, 3, None, meta)  # seeded


@pytest.mark.parametrize("name,seed", [("small_evt2.raw", 0), ("small_v2.dat", 1)])
def test_a_crash_in_a_reader_is_reported(fuzz, monkeypatch, name, seed):
    from evstream.io import prophesee

    def broken(self):
        yield np.zeros(1, dtype=[("t", "<i8")])[1:]  # a reader's bug: wrong dtype
        raise IndexError("boom")

    names = fuzz._STATE["names"]
    case = names.index(name) + len(names) * seed
    assert fuzz.run_case(case)[0] != "OTHER"
    monkeypatch.setattr(prophesee.PropheseeRawReader, "iter_packets", broken)
    monkeypatch.setattr(prophesee.DatReader, "iter_packets", broken)
    outcome, label, detail, _, fmt = fuzz.run_case(case)
    assert outcome == "OTHER" and label == f"{name}:{case}" and "dtype" in detail
    assert fmt == ("evt2" if name.endswith(".raw") else "dat")


def test_a_reader_that_never_returns_is_a_hang(fuzz, monkeypatch):
    from evstream.io import prophesee

    def spinning(self):
        while True:  # a reader's bug: a loop that never ends
            pass
        yield

    monkeypatch.setattr(fuzz, "CASE_CPU_S", 0.3)  # of CPU time, so a loaded machine does not trigger it
    monkeypatch.setattr(prophesee.PropheseeRawReader, "iter_packets", spinning)
    case = fuzz._STATE["names"].index("small_evt3.raw")
    outcome, label, detail, family, fmt = fuzz.run_case(case)
    assert (outcome, label, family, fmt) == ("OTHER", f"small_evt3.raw:{case}", "hang", "evt3")
    assert detail.startswith("HANG: more than 0.3 s of CPU")
