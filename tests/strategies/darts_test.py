"""The DARTS search step: fused phases == two phases, pmap on 8 devices == one device."""

import numpy as np
import pytest


@pytest.mark.slow  # about 3-5 min cold on 2 cores: three programs compiled, one on 8 devices
def test_fused_two_phase_and_pmap_steps_agree(run_script):
    out = run_script("steps_pmap.py", "darts", devices=8, timeout=900)
    assert out == {"method": "darts", "steps": 2}


def test_softmax_weights():
    from jnas.strategies.oneshot import softmax_weights

    w = softmax_weights({"normal": np.zeros((14, 8)), "reduce": np.ones((14, 8))})
    np.testing.assert_allclose(np.asarray(w["normal"]), 1 / 8)
    np.testing.assert_allclose(np.asarray(w["reduce"]).sum(-1), 1.0, rtol=1e-6)
