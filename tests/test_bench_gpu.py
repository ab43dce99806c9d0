"""bench/gpu.py runs end to end on CPU (``--device cpu --small``) and writes every section's figures.

The GPU figures come from a GPU machine; this is the CI check that the prepared script works.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_bench_runs_on_cpu_and_writes_every_figure(tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu.py"), "--device", "cpu", "--small", "--threads", "1", "--out", str(out)],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["device"] == "cpu" and results["small"] is True
    assert results["errors"] == {}
    assert results["peak_gpu_mb"] is None  # no GPU: no memory figure, not a zero

    exact = results["exactness"]["vs_cpu_fused"]
    assert set(exact) >= {"max_abs_logit_diff", "window_argmax_agree", "window_decision_agree", "step_argmax_agree"}
    assert exact["window_argmax_agree"] <= results["exactness"]["windows"]

    by_window = results["windows"]["by_window"]
    assert set(by_window) == {"1", "2", "4"}
    # Windows of any length equal one pass (the 1e-4 target) even on this small run.
    assert all(v["max_abs_logit_diff"] <= 1e-4 and v["step_labels_equal"] for v in by_window.values())

    latency = results["latency"]
    for key in ("T1_eager", "T4_eager", "T1_eager_no_energy", "T4_eager_no_energy"):
        assert 0 < latency[key]["p50_ms_per_step"] <= latency[key]["p99_ms_per_step"]

    runs = results["training"]["runs"]
    assert set(runs) == {"batch2_amp_off", "batch2_amp_on", "batch4_amp_off", "batch4_amp_on"}
    assert "skipped" in runs["batch2_amp_on"]  # AMP is CUDA-only in models/train.py
    for key in ("batch2_amp_off", "batch4_amp_off"):
        sps = runs[key]["samples_per_s"]
        assert sps > 0
        assert abs(runs[key]["projected_200_epochs_s"] - 200 * 1176 / sps) < 1e-6 * runs[key]["projected_200_epochs_s"]

    streams = results["streams"]
    assert streams["batched_vs_separate"]["max_abs_logit_diff"] <= 1e-5
    assert streams["batched_vs_separate"]["step_labels_equal"]
    assert streams["by_n"]["1"]["round_ms"] > 0
    kept_up = [int(n) for n, v in streams["by_n"].items() if v.get("real_time")]
    assert streams["max_real_time_streams"] == max(kept_up, default=0)
    assert "streams in real time at 20 steps/s" in proc.stdout  # the printed table
