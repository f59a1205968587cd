"""The lockstep verdict tells sensitivity from a real difference. dcgan-d2l at the report's widths
is sensitive (its fp32 runs drift past 1e-3 by step 11, as does its fp64 run later), so a plain
tolerance cannot judge it: the verdict compares the gap with the reference's measured floor."""

import dataclasses

import pytest

from ganparity.common import parity
from ganparity.common.spec.layers import BatchNorm
from ganparity.common.spec.registry import get_spec

pytestmark = pytest.mark.slow  # 20-step lockstep runs with their sensitivity floors: minutes

REPORT = dict(nz=32, ngf=16, ndf=16, image_size=32)
STEPS = 20  # the report's lockstep


@pytest.fixture(autouse=True)
def _frameworks(both):
    return both


def lockstep(steps: int = 4, **kw) -> parity.Check:
    spec = get_spec("dcgan-d2l", **REPORT)
    return parity.check_all(spec, 32, steps, **kw)[-1]


def test_the_unmodified_port_is_within_the_floor():
    c = lockstep(STEPS)
    e = c.extra
    assert c.ok and e["verdict"] == "within the sensitivity floor", e.get("beyond_floor")
    assert e["first_step_over"] is not None  # a plain 1e-3 tolerance would have said FAIL
    assert len(e["fp32_floor_per_step"]) == STEPS and all(f > 0 for f in e["fp32_floor_per_step"])
    assert all(g <= parity.NOISE_FACTOR * f for g, f in zip(e["loss_rel_per_step"], e["fp32_floor_per_step"]))


def test_a_real_difference_is_caught_and_named():
    """A port that computes something else (MXNet's eps, not bias-corrected): beyond the floor,
    named at the first step."""
    c = lockstep(naive={"adam-eps"})
    b = c.extra.get("beyond_floor")
    assert not c.ok and c.extra["verdict"] == "differ"
    assert b["step"] == 1 and b["dtype"] == "fp64" and b["tensor_gap"] > 10 * b["tensor_floor"], b


def test_a_wrong_batchnorm_eps_is_caught():
    """The candidate built with BatchNorm eps 1e-5 where the source writes BatchNorm2d(c, 0.8)."""
    spec = get_spec("dcgan-d2l", **REPORT)
    fix = lambda m: dataclasses.replace(m, layers=tuple(dataclasses.replace(x, eps=1e-5) if isinstance(x, BatchNorm)
                                                        else x for x in m.layers))
    c = lockstep(candidate_spec=dataclasses.replace(spec, G=fix(spec.G), D=fix(spec.D)))
    assert c.extra["verdict"] == "differ" and c.extra["beyond_floor"]["step"] == 1
