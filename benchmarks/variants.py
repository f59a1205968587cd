"""The named ways to run one training step (variants), and the parity check that every variant
passes before its numbers mean anything: one step on shared numpy inputs against the default step.

Variants are data: GANTrainer options (the backend's OPTIONS) plus the backend's speed flags for
the row. Nothing here imports torch or mxnet at import time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..common import parity
from ..common import weights as W
from ..common.backend import BACKENDS, available, get_backend
from ..common.errors import choose

DEFAULT = "default"  # the backend's step as is: the source's eager fp32 step, default settings


@dataclass(frozen=True)
class Variant:
    name: str
    backend: str
    options: frozenset[str] = frozenset()  # GANTrainer(..., options=...)
    precision: str = "fp32"  # fp32 | tf32 | bf16: which tolerance the parity check uses
    cuda_only: bool = False
    flags: dict = field(default_factory=dict, compare=False)  # the backend's speed_flags for the row
    note: str = ""


_TF32 = {"cudnn.benchmark": True, "cudnn.allow_tf32": True, "cuda.matmul.allow_tf32": True}
_HYBRID_NOTE = ("follows MXNet's own BatchNorm statistics (native semantics); refuses a spec that emulates "
                "PyTorch's, whose update a hybridized graph cannot run")

VARIANTS: dict[str, dict[str, Variant]] = {
    "torch": {v.name: v for v in (
        Variant(DEFAULT, "torch", note="eager fp32, default settings: the backend's step as is"),
        Variant("channels_last", "torch", frozenset({"channels_last"})),
        Variant("bf16", "torch", frozenset({"bf16"}), "bf16", note="torch.autocast(bfloat16) around G and D"),
        Variant("fused-adam", "torch", frozenset({"fused-adam"}), note="torch.optim.Adam(fused=True)"),
        Variant("foreach-adam", "torch", frozenset({"foreach-adam"}), note="torch.optim.Adam(foreach=True)"),
        Variant("compile", "torch", frozenset({"compile"}), note="torch.compile(G), torch.compile(D)"),
        Variant("tuned", "torch", frozenset({"channels_last", "fused-adam", "compile"}),
                note="channels_last + fused Adam + torch.compile, fp32"),
        Variant("cudnn-benchmark+tf32", "torch", precision="tf32", cuda_only=True, flags=_TF32,
                note="cudnn.benchmark and TF32 for matmul and cuDNN"),
        Variant("tuned-cuda", "torch", frozenset({"channels_last", "fused-adam", "compile"}), "tf32",
                cuda_only=True, flags=_TF32, note="cudnn.benchmark + TF32 + channels_last + fused Adam + compile"),
        Variant("bf16-tuned-cuda", "torch", frozenset({"channels_last", "fused-adam", "bf16"}), "bf16",
                cuda_only=True, flags=_TF32, note="cudnn.benchmark + bf16 autocast + channels_last + fused Adam"),
        Variant("cuda-graph", "torch", frozenset({"cuda-graph"}), cuda_only=True,
                note="whole D+G step captured with torch.cuda.graph, static inputs, Adam(capturable=True)"),
        Variant("compile-max-autotune", "torch", frozenset({"compile-max-autotune"}),
                note="torch.compile(G), torch.compile(D), mode='max-autotune'"),
        Variant("compile-reduce-overhead", "torch", frozenset({"compile-reduce-overhead"}), cuda_only=True,
                note="torch.compile(mode='reduce-overhead'): CUDA graphs per module"),
        Variant("cudnn-benchmark", "torch", cuda_only=True, flags={"cudnn.benchmark": True},
                note="torch.backends.cudnn.benchmark = True, fp32"),
        Variant("fastest-cuda", "torch", frozenset({"bf16", "channels_last", "cuda-graph"}), "bf16",
                cuda_only=True, flags=_TF32,
                note="bf16 autocast + channels_last + capturable Adam + the whole D+G step in one CUDA graph "
                     "+ cudnn.benchmark"),
    )},
    "mxnet": {v.name: v for v in (
        Variant(DEFAULT, "mxnet", note="Gluon imperative: the backend's step as is"),
        Variant("hybridize", "mxnet", frozenset({"hybridize"}),
                note="hybridize(static_alloc=True, static_shape=True); " + _HYBRID_NOTE),
    )},
}

# Tolerances of the variant parity check (relative, see check_variant).
FP32_RTOL = parity.RTOL  # or within parity.NOISE_FACTOR x the default step's own fp32-vs-fp64 error
LOW_PRECISION_RTOL = {"bf16": 5e-2, "tf32": 1e-2}  # one-step losses, relative
LOW_PRECISION_COSINE = 0.98  # cosine similarity of each net's whole gradient with the reference's


def all_variant_names() -> list[str]:
    return list(dict.fromkeys(n for table in VARIANTS.values() for n in table))


def parse_list(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def resolve_variants(names: list[str], backends: list[str]) -> list[Variant]:
    """Variant names -> Variant objects for each backend that has them; 'all' means every one.
    A name no backend knows raises GanparityError listing the valid ones."""
    for b in backends:
        choose("backend", b, BACKENDS)
    if names == ["all"]:
        return [v for b in backends for v in VARIANTS[b].values()]
    valid = ["all"] + list(dict.fromkeys(n for b in backends for n in VARIANTS[b]))
    for n in names:
        choose("variant", n, valid)
    return [VARIANTS[b][n] for b in backends for n in names if n in VARIANTS[b]]


class VariantRunner(parity.Runner):
    """parity.Runner whose trainer carries the variant's options (the parity checks' own runner)."""

    def __init__(self, backend, spec, inputs, options: frozenset[str], dtype="float32", device="cpu"):
        super().__init__(backend, spec, inputs, dtype, device=device)
        self.options = options

    def reset(self):
        w = self.inputs.weights
        self.be.set_arrays(self.G, self.spec.G, W.split(w, "G"))
        self.be.set_arrays(self.D, self.spec.D, W.split(w, "D"))
        return self.be.GANTrainer(self.spec, self.G, self.D, self.naive, options=self.options)


def _cosine(ref: dict, cand: dict, net: str) -> float:
    a, b = (np.concatenate([v.ravel() for k, v in g.items() if k.startswith(net + ".")]).astype(np.float64)
            for g in (ref, cand))
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-300))


def check_variant(spec, variant: Variant, device: str = "cpu", batch: int = 8) -> dict:
    """Does the variant compute the default step? One step on shared numpy inputs, compared with
    common.parity.compare tensor by tensor: the one-step losses, D's and G's gradients (relative
    to the net's largest gradient) and the parameters after the step.

    Reference: the same backend's default variant; for a backend's default, the parity suite's
    reference backend (torch), with both fp64 controls as in `ganparity parity`.
    fp32 variants: relative FP32_RTOL, or within parity.NOISE_FACTOR x the reference's own
    fp32-vs-fp64 error (the variant is no less exact than the default step).
    bf16 / tf32 variants: LOW_PRECISION_RTOL on the one-step losses (bf16 5e-2: gan-gaussian's
    loss_G moves 3.5e-2 in bf16 at batch 8) and each net's gradient within LOW_PRECISION_COSINE
    cosine similarity of the reference's (bf16 measured 0.997 D, 0.989 G on dcgan ngf=16 at batch 8),
    no noise clause. Per-tensor gradient errors (bf16 reaches 0.1-0.2 of the net's largest gradient
    on small dcgan) and the parameters after one Adam step are reported, not judged (Adam's first
    step is lr * sign(g) for small g, so a low-precision gradient flips individual updates).
    BatchNorm running statistics are compared too, for every variant (MXNet's hybridize refuses the
    specs whose statistics it cannot follow, see _HYBRID_NOTE).
    """
    inputs = parity.make_inputs(spec, batch, 1, seed=0)
    reference = parity.REFERENCE
    ref_name = reference if (variant.name == DEFAULT and reference in available()) else variant.backend
    ref_be, be = get_backend(ref_name), get_backend(variant.backend)
    ref = parity.Runner(ref_be, spec, inputs, device=device)
    low = variant.precision in LOW_PRECISION_RTOL
    rtol = LOW_PRECISION_RTOL.get(variant.precision, FP32_RTOL)
    with be.speed_flags(variant.flags):
        cand = VariantRunner(be, spec, inputs, variant.options, device=device)
        c_grads = cand.grads()
        c_state, c_losses = cand.run_steps(1)
    r_grads = ref.grads()
    r_state, r_losses = ref.run_steps(1)
    r64, c64 = {}, {}
    if not low:
        ref64 = parity.Runner(ref_be, spec, inputs, "float64", device=device)
        r64["grads"] = ref64.grads()
        r64["state"], r64["losses"] = ref64.run_steps(1)
        if ref_name != variant.backend:
            cand64 = parity.Runner(be, spec, inputs, "float64", device=device)
            c64["grads"] = cand64.grads()
            c64["state"], c64["losses"] = cand64.run_steps(1)

    def lossdict(a):
        return None if a is None else {k: a[0, i:i + 1].astype(np.float64) for i, k in enumerate(parity.LOSSES)}

    def sel(d, net):
        return None if d is None else {k: v for k, v in d.items() if k.startswith(net + ".")}

    diffs = {"losses": parity.compare(lossdict(r_losses), lossdict(c_losses), lossdict(r64.get("losses")),
                                      lossdict(c64.get("losses")), rtol=rtol)}
    for net in ("D", "G"):
        diffs[f"gradients {net}"] = parity.compare(sel(r_grads, net), sel(c_grads, net), sel(r64.get("grads"), net),
                                                   sel(c64.get("grads"), net), group=True, rtol=rtol)
    diffs["params after step"] = parity.compare(r_state, c_state, r64.get("state"), c64.get("state"),
                                                rtol=float("inf") if low else rtol)
    judged = {k: v for k, v in diffs.items() if not (low and k != "losses")}
    worst = {k: max((t.max_rel for t in v), default=0.0) for k, v in diffs.items()}
    failing = [f"{k}: {t.name} {t.max_rel:.1e}" for k, v in judged.items() for t in v if not t.ok]
    cosine = {net: _cosine(r_grads, c_grads, net) for net in ("D", "G")}
    if low:
        failing += [f"gradients {net}: cosine {c:.4f} < {LOW_PRECISION_COSINE}"
                    for net, c in cosine.items() if c < LOW_PRECISION_COSINE]
    note = []
    if low:
        note.append(f"{variant.precision}: one-step losses within {rtol:g} relative and gradient cosine >= "
                    f"{LOW_PRECISION_COSINE}; per-tensor gradient and parameter errors reported, not judged")
    return {"ok": not failing, "reference": f"{ref_name} {DEFAULT}", "precision": variant.precision,
            "rtol": rtol, "noise_factor": None if low else parity.NOISE_FACTOR, "batch": batch,
            "max_rel": worst, "grad_cosine": cosine, "failing": failing[:4], "note": "; ".join(note)}
