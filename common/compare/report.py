"""The Report of compare_models: every row with its verdict (agree, differ, cannot tell here), every
pair, the first divergence with its hints; as a summary, markdown and JSON."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..files import write_json, write_text
from ..table import md_table
from ..verdicts import AGREE, CANNOT_TELL, DIFFER, FLOOR_FACTOR, NOISE_FACTOR, overall
from .checks import DROPOUT_CHECK, CheckResult
from .hints import CONFIG_HINTS, Hint, kind_hints
from .pairing import Pair


@dataclass
class Divergence:
    check: str
    tensor: str
    torch_layer: str | None
    mxnet_layer: str | None
    max_rel: float
    tolerance: str
    shapes: str | None
    hints: list[Hint]

    @property
    def keys(self) -> list[str]:
        return [h.key for h in self.hints]

    def line(self) -> str:
        where = (f"torch '{self.torch_layer}' <-> mxnet '{self.mxnet_layer}'" if self.torch_layer
                 else "the model output")
        gap = f"shapes differ ({self.shapes})" if self.shapes else f"max rel err {self.max_rel:.3g} ({self.tolerance})"
        return f"{self.check}: first divergence at {where}, tensor '{self.tensor}': {gap}"


@dataclass
class Report:
    """The answer of compare_models: every check, every pair, the first divergence and its hints."""

    torch: dict
    mxnet: dict
    input_shape: tuple
    options: dict
    pairs: list[Pair]
    checks: list[CheckResult]
    notes: list[str]
    fp64: str  # 'run', or why not
    seconds: float = 0.0
    unpaired_layers: dict[str, list[str]] = field(default_factory=dict)  # framework -> layers left out (no tensors)
    output_shapes: list[tuple] = field(default_factory=list)  # the torch model's outputs at this input

    @property
    def verdict(self) -> str:
        """agree, differ or cannot tell here: the rows' verdicts combined (verdicts.combine)."""
        return overall(self.checks)

    @property
    def ok(self) -> bool:
        """No row differs (a 'cannot tell here' row is not a failure, and not a pass: see verdict)."""
        return self.verdict != DIFFER

    @property
    def config_hints(self) -> list[Hint]:
        return [h for p in self.pairs for h in p.hints]

    @property
    def first_divergence(self) -> Divergence | None:
        for c in self.checks:
            d = c.first_divergent
            if d is None:
                continue
            idx = c.where.get(d.name, -1)
            pair = self.pairs[idx] if idx >= 0 else None
            tol = d.reason or (f"tolerance {self.options['rtol']:g}; fp32 noise {d.noise:.2g}, x{NOISE_FACTOR:g} = "
                               f"{NOISE_FACTOR * d.noise:.2g}" if d.noise == d.noise
                               else f"tolerance {self.options['rtol']:g}")
            return Divergence(c.name, d.name, pair.torch.path if pair and pair.torch else None,
                              pair.mxnet.path if pair and pair.mxnet else None, d.max_rel, tol,
                              c.shapes.get(d.name), self._hints(c, d.name, pair, idx))
        return None

    def _hints(self, check: CheckResult, tensor: str, pair: Pair | None, idx: int) -> list[Hint]:
        """The diverging layer's configuration differences that can explain this check first, then
        what its kind can do; for a step whose gradients agreed, the optimizer; for the output
        alone, how the layers are combined."""
        category = {"forward train": "train", "forward eval": "eval", "gradients": "grad",
                    DROPOUT_CHECK: "train"}.get(check.name)
        if category is None:
            category = "stats" if tensor.rsplit(".", 1)[-1].startswith("running_") else "grad"
        if pair is None:
            return [Hint("combination", "", CONFIG_HINTS["combination"], frozenset({category}))]
        relevant = [h for h in pair.hints if category in h.affects]
        others = [h for h in pair.hints if category not in h.affects]
        if relevant:
            return relevant + others
        if check.category == "forward" and check.inputs_agree.get(tensor) is False:
            # the layer got a different input while every layer before it agreed: not this layer
            return [Hint("unexplained", pair.torch.path, CONFIG_HINTS["unexplained"], frozenset({category}))] + others
        grads = next((c for c in self.checks if c.name == "gradients"), None)
        if check.category == "step" and category == "grad" and grads is not None and grads.ok:
            return [Hint("optimizer", pair.torch.path, CONFIG_HINTS["optimizer"], frozenset({"grad"}))] + others
        info = {"torch": self.torch, "mxnet": self.mxnet, "mode": self.options["mode"]}
        return kind_hints(pair, category, info) + others

    def summary(self) -> str:
        """A few lines: the verdict, the first divergence with its hints, the checks."""
        n_t = sum(len(p.tensors) for p in self.pairs)
        head = (f"torch {self.torch['class']} vs mxnet {self.mxnet['class']}, input {self.input_shape}: "
                f"{self.verdict.upper()} ({len(self.pairs)} layers paired, {n_t} tensors; "
                f"fp64 control: {self.fp64})")
        lines = [head]
        d = self.first_divergence
        if d is not None:
            lines.append("  " + d.line())
            lines += [f"  hint {h.line()}" for h in d.hints]
        for c in self.checks:
            state = "skipped: " + c.skipped if c.skipped else c.verdict
            why = f" ({c.reason}; try {c.suggestion})" if c.verdict == CANNOT_TELL and not c.skipped else ""
            lines.append(f"  {c.name:<14} {state:<17} max rel err {c.max_rel:.3g}{why}")
        lines += [f"  note {n}" for n in self.notes if n.startswith("conditioning")]
        return "\n".join(lines)

    def assert_close(self, strict: bool = False) -> Report:
        """For pytest: raise AssertionError with the summary if a row differs (with strict=True,
        also if a row cannot tell: the check could not have seen a small wrong change there)."""
        if not self.ok:
            raise AssertionError("the ports differ\n" + self.summary())
        if strict and self.verdict != AGREE:
            raise AssertionError("the comparison cannot tell here\n" + self.summary())
        return self

    def to_dict(self) -> dict:
        d = self.first_divergence
        return {
            "ok": self.ok, "verdict": self.verdict, "torch": self.torch, "mxnet": self.mxnet,
            "input_shape": list(self.input_shape),
            "options": self.options, "fp64": self.fp64, "notes": self.notes, "seconds": self.seconds,
            "unpaired_layers": self.unpaired_layers,
            "first_divergence": None if d is None else dataclasses.asdict(d) | {"line": d.line()},
            "pairs": [{"torch": p.torch.path if p.torch else None, "mxnet": p.mxnet.path if p.mxnet else None,
                       "kind": (p.torch or p.mxnet).kind, "source": p.source,
                       "torch_call": p.torch.repr if p.torch else None, "mxnet_call": p.mxnet.repr if p.mxnet else None,
                       "tensors": [{"role": r, "torch": tn, "mxnet": mn} for r, tn, mn in p.tensors],
                       "hints": [dataclasses.asdict(h) for h in p.hints]} for p in self.pairs],
            "checks": [{"name": c.name, "ok": c.ok, "verdict": c.verdict, "reason": c.reason,
                        "suggestion": c.suggestion, "max_rel": c.max_rel, "skipped": c.skipped, "loss": c.loss,
                        "first_divergent": c.first_divergent.name if c.first_divergent else None,
                        "shapes": c.shapes, "tensors": [dataclasses.asdict(t) for t in c.tensors]}
                       for c in self.checks],
        }

    def markdown(self) -> str:
        """report.md: the verdict and first divergence, both models, every check, every pair."""
        o, d = self.options, self.first_divergence
        lines = [f"# ganparity compare: {self.verdict}", ""]
        if d is not None:
            lines += [f"**{d.line()}**", ""] + [f"- hint {h.line()}" for h in d.hints] + [""]
        rows = [("model", f"`{self.torch['class']}`", f"`{self.mxnet['class']}`"),
                ("from", self.torch.get("from", "-"), self.mxnet.get("from", "-")),
                ("trainable values", f"{self.torch['parameters']:,}", f"{self.mxnet['parameters']:,}"),
                ("device", self.torch["device"], self.mxnet["device"]),
                ("BatchNorm statistics move", self.torch["bn_stats"], self.mxnet["bn_stats"]),
                ("optimizer", f"`{o['torch_optimizer']}`", f"`{o['mxnet_optimizer']}`")]
        lines += _table(["", "torch", "mxnet"], rows) + [""]
        lines += [f"Input {self.input_shape} ({o['input']}); loss `{o['loss']}`; gradients and steps in {o['mode']} "
                  f"mode; {o['steps']} step(s) of `{o['optimizer']}`; "
                  + ("each model keeps its own weights (the weights row checks they are equal)" if o["weights"] == "own"
                     else f"weights copied from {o['weights']} as numpy") + f"; fp64 control: {self.fp64}. "
                  f"Verdicts (common/verdicts.py): **differ** when a gap is beyond its allowance (fp64: "
                  f"{FLOOR_FACTOR:g}x the reference's own fp64 floor; fp32: {o['rtol']:g} or {NOISE_FACTOR:g}x the "
                  "fp32 noise); **agree** when within an allowance small enough to have seen a wrong change of 1e-4; "
                  "**cannot tell here** otherwise, with the reason"
                  + ("" if self.fp64 == "run" else " (without the fp64 control, rows are judged on fp32 alone: a row "
                     "whose fp32 noise is above 2.5e-6 cannot tell)") + f". {self.seconds:.1f} s.", ""]
        lines += [f"- {n}" for n in self.notes] + ([""] if self.notes else [])

        def worst(c: CheckResult, key: str) -> str:
            values = [getattr(t, key) for t in c.tensors if getattr(t, key) == getattr(t, key)]
            return f"{max(values):.2g}" if values else "-"

        lines += ["## Checks", ""] + _table(
            ["check", "verdict", "max rel err", "torch fp32 noise", "mxnet fp32 noise", "fp64 rel err", "fp64 floor",
             "deciding tensor", "why"],
            [(c.name, f"skipped: {c.skipped}" if c.skipped else (c.verdict if c.verdict == AGREE else
                                                                 f"**{c.verdict}**"), f"{c.max_rel:.3g}",
              worst(c, "noise_ref"), worst(c, "noise_cand"), worst(c, "fp64_rel"), worst(c, "floor"),
              c.worst or "-", (c.reason + (f"; try {c.suggestion}" if c.suggestion else "")) or "-")
             for c in self.checks])
        hints = self.config_hints
        lines += ["", f"## Configuration differences ({len(hints)})", ""]
        lines += [f"- torch '{h.layer}': {h.line()}" for h in hints] or ["None found."]
        by_check = {c.name: {t.name: t for t in c.tensors} for c in self.checks}

        def cell(check: str, key: str) -> str:
            t = by_check.get(check, {}).get(key)
            return "-" if t is None else (f"{t.max_rel:.2g}" if t.verdict == AGREE else f"**{t.max_rel:.2g}**")

        lines += ["", f"## Layer pairs ({len(self.pairs)})", ""] + _table(
            ["#", "torch", "mxnet", "kind", "paired by", "tensors", "forward train", "forward eval"],
            [(i, f"`{p.torch.path}` {p.torch.type}", f"`{p.mxnet.path}` {p.mxnet.type}", p.torch.kind, p.source,
              ", ".join(r for r, _, _ in p.tensors) or "-", cell("forward train", p.torch.path),
              cell("forward eval", p.torch.path)) for i, p in enumerate(self.pairs)])
        for fw, paths in self.unpaired_layers.items():
            if paths:
                lines += ["", f"Layers of the {fw} model without a counterpart (no tensors; not compared): "
                          + ", ".join(f"`{p}`" for p in paths)]
        names = {tn: mn for p in self.pairs for _, tn, mn in p.tensors}
        for c in self.checks:
            if c.category in ("forward", "config") or not c.tensors:
                continue
            loss = f" (loss torch {c.loss['torch']:.6g}, mxnet {c.loss['mxnet']:.6g})" if c.loss else ""
            lines += ["", f"## {c.name}{loss}", ""] + _table(
                ["tensor (torch)", "mxnet", "verdict", "max rel err", "fp32 noise", "fp64 rel err", "fp64 floor"],
                [(f"`{t.name}`", f"`{names.get(t.name, '?')}`", t.verdict if t.verdict == AGREE else
                  f"**{t.verdict}**", f"{t.max_rel:.2g}", f"{t.noise:.2g}", f"{t.fp64_rel:.2g}", f"{t.floor:.2g}")
                 for t in c.tensors])
        return "\n".join(lines) + "\n"

    def write(self, out: str | os.PathLike) -> tuple[Path, Path]:
        """report.md and report.json in the folder `out`."""
        out = Path(out)
        md = write_text(out / "report.md", self.markdown())
        js = write_json(out / "report.json", self.to_dict(), default=_json_default)
        return md, js


def _table(headers: list[str], rows) -> list[str]:
    return md_table(headers, [list(r) for r in rows]).splitlines()


def _json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, frozenset | set | tuple):
        return sorted(v) if isinstance(v, frozenset | set) else list(v)
    return str(v)

