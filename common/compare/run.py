"""compare_models: the driver. Walk both models, pair them, run every check (checks.py), judge,
and hand back a Report (report.py). The frameworks are reached through get_backend()."""

from __future__ import annotations

import importlib
import time
from typing import Any

import numpy as np

from ..differences import BY_KEY, emulated
from ..errors import GanparityError, choose
from ..files import release_memory
from ..spec.model import Semantics
from ..usermodel import (
    DEFAULT_OPTIMIZER,
    FRAMEWORKS,
    LOSSES,
    MODES,
    Rejected,
    first_line,
    optimizer_text,
    parse_optimizer,
)
from ..verdicts import RTOL, nonfinite
from .checks import (
    SideRun,
    bn_translation,
    build_checks,
    conditioning,
    floor_of,
    forward_rows,
    layer_inputs,
    run_side,
    translate_bn,
    weights_row,
)
from .hints import config_hints
from .inputs import draw_inputs, load_mapping, targets
from .pairing import WalkedLayer, pair_layers
from .report import Report

WEIGHTS = ("torch", "mxnet", "own")


def compare_backend(name: str):
    """backends/<name>/compare.py, reached through get_backend (which checks that the framework is
    installed and imports it): the module beside the backend's api, so no path is spelled here."""
    from ..backend import get_backend

    return importlib.import_module(".compare", get_backend(name).__package__)


def _rejected(e: Rejected, other_be, other_model, x: np.ndarray) -> GanparityError:
    """One line: what the model refused, where, and a hint from the other model's counterpart."""
    other_fw = "mxnet" if e.framework == "torch" else "torch"
    try:
        recs, _ = other_be.walk(other_model, x, "eval")
    except Rejected as both:
        return GanparityError(f"both models reject input shape {e.input_shape}: {e} ; and {both}")
    layer = WalkedLayer.of(e.framework, -1, e.layer | {"out_shape": None})
    k = e.done.count(layer.kind)
    same = [WalkedLayer.of(other_fw, i, r) for i, r in enumerate(recs) if r["kind"] == layer.kind and r["call"] == 1]
    msg = str(e)
    if k < len(same):
        t, m = (layer, same[k]) if e.framework == "torch" else (same[k], layer)
        hints = config_hints(t, m)
        msg += f"; its {other_fw} counterpart is {same[k].label}, input {same[k].in_shape}"
        if hints:
            msg += "; hint " + "; ".join(h.line() for h in hints)
    return GanparityError(msg)


def _discard(path: str, array) -> None:
    """The pairing walks keep the layers' shapes, not their outputs (a large model's would not fit)."""


def refuse_nonfinite(state: dict[str, np.ndarray], what: str) -> None:
    """A NaN or Inf weight is the model's, not a port difference: refused, naming the tensors."""
    bad = [(n, b) for n, b in ((n, nonfinite(a)) for n, a in state.items()) if b]
    if bad:
        shown = ", ".join(f"'{n}' ({b})" for n, b in bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise GanparityError(f"{what} holds non-finite values: {shown}; the comparison needs finite weights")


def _f32_setting(setting: dict) -> dict:
    return {k: (float(np.float32(v)) if isinstance(v, float) else v) for k, v in setting.items()}


def compare_models(torch_model: Any, mxnet_model: Any, inputs: Any, *, mode: str = "train",
                   loss: str = "projection", optimizer: str | dict = DEFAULT_OPTIMIZER, steps: int = 1,
                   mapping: Any = None, weights: str = "torch", fp64: bool = True, rtol: float = RTOL, seed: int = 0,
                   sources: dict[str, str] | None = None, semantics: str | None = None) -> Report:
    """Do a PyTorch module and a Gluon block compute the same thing? (the package docstring says
    how). `inputs`: a numpy batch, or a shape such as (4, 3, 64, 64) to draw one; `mode`: the
    mode of the gradient and step checks (the forward is compared in both); `loss`: one of LOSSES
    (default 'projection': the outputs dotted with a fixed random tensor, so that every output
    element has a gradient); `optimizer`: 'sgd:lr=0.01,momentum=0.9,wd=1e-4' or
    'adam:lr=2e-4,beta1=0.5'; `semantics`: whose Adam both follow ('torch', the default, or
    'mxnet'); `steps`: optimizer steps to compare (0: none);
    `mapping`: a mapping file or dict (MappingFile); `weights`: whose initial weights both start
    from ('torch', 'mxnet'), or 'own': each keeps its own, and a first row checks that they are
    equal (a port copies). Both models end holding their initial weights, in float32. Returns a
    Report; .assert_close() raises AssertionError with the summary if any row differs."""
    t0 = time.perf_counter()
    choose("mode", mode, MODES)
    choose("loss", loss, LOSSES)
    choose("weights", weights, WEIGHTS)
    if not isinstance(steps, int | np.integer) or steps < 0:
        raise GanparityError(f"steps must be a non-negative integer, got {steps!r}")
    setting = parse_optimizer(optimizer) if isinstance(optimizer, str) else dict(optimizer)
    if semantics is not None:  # whose Adam both optimizers follow (the older spelling: follow= in the setting)
        setting["follow"] = choose("semantics", semantics, FRAMEWORKS)
    file = load_mapping(mapping)
    x, how = draw_inputs(inputs, seed)
    T, M = compare_backend("torch"), compare_backend("mxnet")
    tm, notes_t = T.prepare_model(torch_model, "the torch model")
    mm, notes_m = M.prepare_model(mxnet_model, "the mxnet model")
    notes = notes_t + notes_m
    T.cast_model(tm, "float32")
    M.cast_model(mm, "float32")
    try:  # the eval walk pairs the layers (and makes Gluon's deferred parameters real)
        t_recs, t_outs = T.walk(tm, x, "eval", on_output=_discard, keep_inputs=False)
    except Rejected as e:
        raise _rejected(e, M, mm, x) from None
    try:
        m_recs, m_outs = M.walk(mm, x, "eval", on_output=_discard, keep_inputs=False)
    except Rejected as e:
        raise _rejected(e, T, tm, x) from None
    info = {"torch": T.model_info(tm) | {"from": (sources or {}).get("torch", "-")},
            "mxnet": M.model_info(mm) | {"from": (sources or {}).get("mxnet", "-")}}
    tl = [WalkedLayer.of("torch", i, r) for i, r in enumerate(t_recs)]
    ml = [WalkedLayer.of("mxnet", i, r) for i, r in enumerate(m_recs)]
    t_state, m_state = T.get_state(tm), M.get_state(mm)
    refuse_nonfinite(t_state, "the torch model")
    refuse_nonfinite(m_state, "the mxnet model")
    mp = pair_layers(tl, ml, file, t_state, m_state)
    where_t = {p.torch.path: i for i, p in enumerate(mp.pairs)}
    if weights == "own":
        init_t = {tn: t_state[tn] for tn in mp.tensor_map}
        init_m = {mn: m_state[mn] for mn in mp.tensor_map.values()}
        weights_check = weights_row(mp, t_state, m_state, {tn: where_t[p.torch.path] for p in mp.pairs
                                                           for _, tn, _ in p.tensors})
    else:
        src = t_state if weights == "torch" else m_state
        init_t = {tn: (src[tn] if weights == "torch" else src[mn]) for tn, mn in mp.tensor_map.items()}
        init_m = {mn: init_t[tn] for tn, mn in mp.tensor_map.items()}
        weights_check = None
    shapes_differ = [f"output {i}: torch {a.shape}, mxnet {b.shape}" for i, (a, b) in enumerate(zip(t_outs, m_outs))
                     if a.shape != b.shape] + ([f"torch returns {len(t_outs)} outputs, mxnet {len(m_outs)}"]
                                               if len(t_outs) != len(m_outs) else [])
    target = None if shapes_differ else targets(loss, t_outs, seed)
    follow = setting.get("follow", "torch")
    sem = Semantics(adam_eps=follow, adam_betas=follow)
    emulate = {fw: tuple(k for k in emulated(sem, fw) if k in ("adam-eps", "adam-betas")) if setting["name"] == "adam"
               else () for fw in FRAMEWORKS}
    bn_fix = info["mxnet"]["bn_stats"] == "backward-biased" and info["torch"]["bn_stats"] == "forward-unbiased"
    opts = {"mode": mode, "loss": loss, "steps": int(steps), "optimizer": setting, "emulate": emulate,
            "skip_backward": bool(shapes_differ)}
    bn = bn_translation(mp.pairs) if bn_fix else []
    translate = (lambda states: translate_bn(states, init_m, bn)) if bn and mode == "train" else None
    names_t = {"paths": {p.torch.path: p.torch.path for p in mp.pairs}, "tensors": {tn: tn for tn in mp.tensor_map}}
    names_m = {"paths": {p.mxnet.path: p.torch.path for p in mp.pairs},
               "tensors": {mn: tn for tn, mn in mp.tensor_map.items()}}
    _, call_t = T.make_optimizer(tm, setting, emulate["torch"])
    _, call_m = M.make_optimizer(mm, setting, emulate["mxnet"])
    runs: dict[str, SideRun] = {}
    floors: dict = {}
    fp64_state = "not asked for"
    forward, dropped = {}, []
    try:
        if fp64:
            try:
                forward, dropped = forward_rows(T, M, tm, mm, init_t, init_m, x, names_t, names_m, True,
                                                lambda: T.round_constants(tm), rtol)
            except Exception as e:  # a layer without float64 kernels: judge on the fixed tolerance alone
                fp64, fp64_state = False, f"not run ({type(e).__name__}: {first_line(e)[:120]})"
        if not fp64:
            forward, dropped = forward_rows(T, M, tm, mm, init_t, init_m, x, names_t, names_m, False, None, rtol)
        release_memory()
        runs["torch"] = run_side(T, tm, init_t, x, opts, "float32", target, names_t)
        release_memory()  # after each run: a large model's runs would otherwise add up in freed heap pages
        runs["mxnet"] = run_side(M, mm, init_m, x, opts, "float32", target, names_m, translate)
        release_memory()
        if fp64:
            try:
                runs["torch64"] = run_side(T, tm, init_t, x, opts, "float64", target, names_t)
                release_memory()
                runs["mxnet64"] = run_side(M, mm, init_m, x, opts, "float64", target, names_m, translate)
                release_memory()
                fp64_state = "run"
            except Exception as e:  # a layer without float64 kernels: judge on the fixed tolerance alone
                runs.pop("torch64", None)
                fp64_state = f"not run ({type(e).__name__}: {first_line(e)[:120]})"
        if "torch64" in runs:  # the floor: the reference's own drift under what MXNet does to every constant
            with T.round_constants(tm):
                rounded = run_side(T, tm, init_t, x, opts | {"optimizer": _f32_setting(setting)}, "float64", target,
                                   names_t)
            floors = floor_of(runs["torch64"], [rounded])
    finally:
        T.cast_model(tm, "float32")
        M.cast_model(mm, "float32")
        T.set_state(tm, init_t)
        M.set_state(mm, init_m)
        T.restore_mode(tm, info["torch"])
    if dropped:
        notes.append(f"dropout set to rate 0 in the train-mode checks: {', '.join(dropped)}")
    if bn:
        notes.append(f"bn-stats: Gluon (CPU) moves BatchNorm running statistics in backward with the biased batch "
                     f"variance, PyTorch in forward with the unbiased one; the {len(bn)} mxnet running_var "
                     "tensors are corrected by n / (n - 1) on their batch term, with Gluon's own momentum, before "
                     "the step comparison")
    if setting["name"] == "adam":
        notes.append(f"adam: both optimizers follow {follow}'s Adam (adam-eps: "
                     f"{BY_KEY['adam-eps'].torch if follow == 'torch' else BY_KEY['adam-eps'].gluon}); "
                     f"--semantics {'mxnet' if follow == 'torch' else 'torch'} selects the other")
    elif setting["momentum"]:
        notes.append("sgd-momentum: at a constant lr torch.optim.SGD and MXNet's SGD take the same steps; "
                     "MXNet keeps lr inside its momentum buffer, so a later lr change acts differently")
    if mode == "eval" and any(p.torch.kind == "batchnorm" for p in mp.pairs):
        notes.append("bn-eval-backward: the eval-mode gradients come from Gluon's loss.backward(train_mode=False); "
                     "a plain backward() back-propagates BatchNorm's batch-statistics formula (apache/mxnet#9580)")
    notes.append(f"loss-reduction: both backpropagate one scalar ({loss}); Gluon calls trainer.step(1) "
                 "(the same as per-sample losses with trainer.step(batch_size))")
    if steps:
        notes.append("steps: each step row compares the update since the start (state_k - state_0), so a wrong "
                     "learning rate, momentum or weight decay is not hidden under the size of the weights")
    in_pairs = {"torch": {p.torch.index for p in mp.pairs}, "mxnet": {p.mxnet.index for p in mp.pairs}}
    lone_dropout = {fw: [la for la in layers if la.kind == "dropout" and la.index not in in_pairs[fw]]
                    for fw, layers in (("torch", tl), ("mxnet", ml))}
    graph_dropout = None
    if info["mxnet"].get("graph_dropout") is not None:  # an imported graph: its Dropout ops, in order
        rates = info["mxnet"]["graph_dropout"]
        torch_rates = [(la.path, float(la.config.get("rate") or 0.0)) for la in lone_dropout["torch"]]
        graph_dropout = [(f"torch '{path}' / graph Dropout {k}", r, rates[k] if k < len(rates) else 0.0)
                         for k, (path, r) in enumerate(torch_rates)]
        graph_dropout += [(f"graph Dropout {k} (no torch counterpart)", 0.0, r) for k, r in
                          enumerate(rates) if k >= len(torch_rates)]
        lone_dropout = {"torch": [], "mxnet": lone_dropout["mxnet"]}
        if not mp.pairs:
            notes.append("layers: the mxnet model is an imported graph: the forward rows compare the final outputs "
                         "(per-layer rows are not available), the weights and gradients every tensor of the mapping")
    inputs = lambda m: layer_inputs(T, M, tm, mm, init_t, init_m, x, names_t, names_m, m, rtol)  # noqa: E731
    try:
        checks = build_checks(mp, runs, floors, where_t, opts, rtol, shapes_differ, weights_check, lone_dropout,
                              forward, inputs, graph_dropout)
    finally:
        T.set_state(tm, init_t)
        M.set_state(mm, init_m)
        T.restore_mode(tm, info["torch"])
    notes += conditioning(checks, mp.pairs)
    unpaired = {fw: [layer.path for layer in layers if layer.index not in in_pairs[fw]]
                for fw, layers in (("torch", tl), ("mxnet", ml))}
    options = {"mode": mode, "loss": loss, "steps": int(steps), "optimizer": optimizer_text(setting),
               "weights": weights, "rtol": rtol, "seed": seed, "input": how, "mapping": file.source or None,
               "torch_optimizer": call_t, "mxnet_optimizer": call_m}
    return Report(info["torch"], info["mxnet"], tuple(x.shape), options, mp.pairs, checks, notes, fp64_state,
                  time.perf_counter() - t0, unpaired, [tuple(a.shape) for a in t_outs])
