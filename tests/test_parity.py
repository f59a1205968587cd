"""Numerical parity, torch against mxnet, for every GAN spec under both semantics (test widths,
fp32 on CPU): each spec's own (its source's framework) and the other framework's."""

import pytest

from ganparity.common import parity
from ganparity.common.spec.registry import GAN_SPECS

from .conftest import small_spec, specs


@pytest.fixture(scope="module")
def results(request):
    pytest.importorskip("torch")
    pytest.importorskip("mxnet")
    return {}


SEMANTICS = ("torch", "mxnet")


def _checks(results, name, semantics):
    if (name, semantics) not in results:
        batch = 8 if name == "gan-gaussian" else 16
        checks = parity.check_all(small_spec(name, semantics=semantics), batch, steps=20)
        results[name, semantics] = {c.check: c for c in checks}
    return results[name, semantics]


@pytest.mark.parametrize("semantics", SEMANTICS)
@pytest.mark.parametrize("spec_name", specs(GAN_SPECS))
@pytest.mark.parametrize("check", ["forward G train", "forward G eval", "forward D train", "forward D eval",
                                   "gradients D", "gradients G", "one step"])
def test_forward_gradient_and_one_step_agree(results, spec_name, check, semantics):
    c = _checks(results, spec_name, semantics)[check]
    assert c.semantics == semantics
    assert c.ok, f"{spec_name} {check}: first out of tolerance {c.first_divergent}, max rel {c.max_rel:.2e}"
    # fp64 proves the semantics, not only the tolerance: every tensor agrees far below fp32 noise.
    assert max(t.fp64_rel for t in c.tensors) < 1e-5


@pytest.mark.parametrize("semantics", SEMANTICS)
@pytest.mark.parametrize("spec_name", specs(GAN_SPECS))
def test_forward_is_within_1e5_outright(results, spec_name, semantics):
    for check in ("forward G train", "forward G eval", "forward D train", "forward D eval"):
        assert _checks(results, spec_name, semantics)[check].max_rel < 1e-5


@pytest.mark.parametrize("semantics", SEMANTICS)
@pytest.mark.parametrize("name", specs(["dcgan", "dcgan-gluon", "dcgan-d2l", "gan-gaussian"]))
def test_lockstep_20_steps(results, name, semantics):
    c = _checks(results, name, semantics)["lockstep 20 steps"]
    e = c.extra
    assert len(e["loss_rel_per_step"]) == 20
    assert e["fp64_max_loss_rel"] < 1e-6, "in float64 the two frameworks train identically"
    assert e["verdict"] in ("agree", "within the sensitivity floor")
    assert c.ok, (f"{name}: fp32 loss gap {e['max_loss_rel']:.1e} first over 1e-3 at step "
                  f"{e['first_step_over']}; the frameworks' own fp32 noise {e['noise_max']:.1e}")


def test_compare_flags_a_real_difference():
    import numpy as np

    ref = {"a": np.ones(4, np.float32)}
    bad = {"a": np.array([1, 1, 1, 1.001], np.float32)}
    (d,) = parity.compare(ref, bad)
    assert not d.ok and d.max_rel == pytest.approx(1e-3, rel=1e-3)
    (d,) = parity.compare(ref, ref)
    assert d.ok and d.max_abs == 0
