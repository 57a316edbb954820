"""The roofline's linear-layer predictions against measured H100/A100 timings (Vidur's profiles).

Tolerance (documented in eval/sim/fit/calibration.py): per file and TP degree, over every measured token count,
the per-layer time of the four GEMMs (QKV, output, gate+up, down) is within 45% of the measured median at
every point, within 20% at the 90th percentile of points and within 10% at the median point; the same for the
whole layer's linear part (GEMMs plus norms, rotary, activation, residual add).
"""

from __future__ import annotations

import numpy as np
import pytest

from continuum_eval.sim.cost.profiles import A100_EFF, H100_EFF
from continuum_eval.sim.cost.specs import GPUS
from continuum_eval.sim.fit.calibration import VIDUR_DIR, errors, load_vidur, vidur_files

pytestmark = pytest.mark.skipif(not VIDUR_DIR.is_dir() or not vidur_files(VIDUR_DIR),
                                reason=f"measured GPU profiles not found at {VIDUR_DIR}")
EFF = {"h100": H100_EFF, "a100": A100_EFF}
FILES = [f.name for f in vidur_files(VIDUR_DIR)] if VIDUR_DIR.is_dir() else []


@pytest.mark.parametrize("name", FILES)
def test_roofline_matches_measured_linear_layers(name):
    points = load_vidur(VIDUR_DIR / name)
    gpu = points[0].gpu
    assert gpu in GPUS
    for tp in sorted({p.tp for p in points}):
        sub = [p for p in points if p.tp == tp]
        for what in ("gemm", "total"):
            err = np.abs(errors(sub, GPUS[gpu], EFF[gpu], what))
            assert err.max() <= 0.45, (name, tp, what, float(err.max()))
            assert np.quantile(err, 0.9) <= 0.20, (name, tp, what, float(np.quantile(err, 0.9)))
            assert np.median(err) <= 0.10, (name, tp, what, float(np.median(err)))


def test_measured_points_are_what_the_readme_says():
    points = load_vidur(VIDUR_DIR / "h100_meta-llama_Llama-2-7b-hf.mlp.csv")
    at = {p.tokens: p.total_ms() for p in points if p.tp == 1}
    assert at[1] == pytest.approx(0.175, rel=0.05)
    assert at[4096] == pytest.approx(2.6, rel=0.05)
