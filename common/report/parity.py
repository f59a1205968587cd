"""The numerical parity checks of some GAN specs at the report's widths, and their tables.

`semantics` says whose numbers each backend's step follows (one word across spec, bench, port and
compare; common/spec/model.py Semantics):

    source   the spec's own: its source tutorial's framework, emulated by the other backend (default)
    own      each backend in its own framework's semantics: the reference (torch) follows PyTorch,
             the candidate computes every semantic difference its own framework's way, as a native
             port would; shows what porting natively rather than faithfully changes
    torch, mxnet   both backends follow that framework's numbers (the other emulates them)

The tables take the JSON form of the checks (parity.Check.to_dict(), as results.json holds them),
so that the docs render the committed data with the very code the report uses.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from .. import parity
from ..differences import SEMANTIC_KEYS
from ..errors import GanparityError, choose
from ..files import atomic_write
from ..spec.model import FRAMEWORKS
from ..spec.registry import GAN_SPECS, REGISTRY, get_spec
from ..table import md_table
from ..verdicts import AGREE, CANNOT_TELL, DIFFER, combine

# Parity runs small widths so the report finishes in minutes on 2 CPU cores; the architecture
# (layer kinds, order, strides, recipe) is the spec's own. gan-gaussian is tiny and runs as is.
PARITY_KNOBS = {"gan-gaussian": {}, "dcgan": dict(nz=32, ngf=16, ndf=16, image_size=32),
                "dcgan-d2l": dict(nz=32, ngf=16, ndf=16, image_size=32),
                "dcgan-gluon": dict(nz=32, ngf=16, ndf=16, image_size=32)}
PARITY_BATCH = {"gan-gaussian": 8}
DEFAULT_BATCH = 32
SEMANTICS = ("source", "own", *FRAMEWORKS)


def widths() -> str:
    """The report's widths, in words."""
    return "; ".join(f"{k} {v or 'as specified'}" for k, v in PARITY_KNOBS.items())


def run_parity(specs: list[str], backends: list[str], steps: int, knobs: dict | None = None,
               batch: int | None = None, fp64: bool = True, semantics: str = "source",
               progress: Callable[[str], None] = lambda msg: None) -> list[parity.Check]:
    """Each spec at the report's widths, overridden by knobs (each spec takes the knobs it has),
    reference backends[0] against candidate backends[1], under `semantics` (the module's doc)."""
    choose("semantics", semantics, SEMANTICS)
    knobs = dict(knobs or {})
    if semantics != "source":
        chosen = backends[0] if semantics == "own" else semantics
        if knobs.get("semantics", chosen) != chosen:
            raise GanparityError(f"--semantics {semantics} and --set semantics={knobs['semantics']} disagree: "
                                 "give one of them")
        knobs["semantics"] = chosen
    naive = frozenset(SEMANTIC_KEYS) if semantics == "own" else frozenset()
    checks = []
    for name in specs:
        own = REGISTRY[choose("GAN spec", name, GAN_SPECS)].knobs()
        spec = get_spec(name, kind="gan", **(PARITY_KNOBS.get(name, {}) | {k: v for k, v in knobs.items()
                                                                              if k in own}))
        b = batch if batch is not None else PARITY_BATCH.get(name, DEFAULT_BATCH)
        progress(f"parity {name} {spec.params} batch {b} ...")
        checks += parity.check_all(spec, b, steps, reference=backends[0], candidate=backends[1], with_fp64=fp64,
                                   naive=naive)
    return checks


# -- tables, from the JSON form of the checks ----------------------------------------------------------------

_LOCKSTEP_WORDS = {"within the sensitivity floor": CANNOT_TELL}  # the lockstep's older word for it


def verdict(row: dict) -> str:
    """agree, differ or cannot tell here (common/verdicts.py) of one check's JSON, old files included."""
    v = row.get("verdict") or (row.get("extra") or {}).get("verdict")
    if v:
        return _LOCKSTEP_WORDS.get(v, v)
    return AGREE if row["ok"] else DIFFER


def _max(values, default=math.nan) -> float:
    values = [v for v in values if v is not None and v == v]
    return max(values, default=default)


def parity_table(rows: list[dict]) -> str:
    """One line per check: its verdict, the fp32 gap, each side's own fp32 error, the fp64 gap,
    the lockstep's sensitivity floor, where it first went over, and the worst tensor."""
    out = []
    for c in rows:
        tensors = c.get("tensors", [])
        worst = max(tensors, key=lambda t: t["max_rel"], default=None)
        fp64 = _max(t.get("fp64_rel") for t in tensors)
        nref = _max(t.get("noise_ref") for t in tensors)
        ncand = _max(t.get("noise_cand") for t in tensors)
        if c["check"].startswith("lockstep"):
            e = c["extra"]
            nref, ncand = (_max(e.get(k, [])) for k in ("reference_fp32_noise_per_step",
                                                         "candidate_fp32_noise_per_step"))
            beyond = e.get("beyond_floor")
            where = (f"step {beyond['step']} ({beyond['dtype']}), {beyond['tensor']}" if beyond
                     else f"step {e['first_step_over']}" if e["first_step_over"] else "never")
            out.append([c["spec"], c.get("semantics", "-"), c["check"], verdict(c), e["max_loss_rel"], nref, ncand,
                        e.get("fp64_max_loss_rel", math.nan), _max(e.get("fp32_floor_per_step", [])), where,
                        f"params {e['max_param_rel']:.1e}"])
        else:
            out.append([c["spec"], c.get("semantics", "-"), c["check"], verdict(c), c["max_rel"], nref, ncand, fp64,
                        "-", c.get("first_divergent") or "-", worst["name"] if worst else "-"])
    names = (rows[0]["reference"], rows[0]["candidate"]) if rows else ("reference", "candidate")
    head = ["spec", "semantics", "check", "verdict", "max rel err (fp32)", f"{names[0]} own fp32 error",
            f"{names[1]} own fp32 error", "max rel err (fp64)", "sensitivity floor (fp32, max)",
            "first over tolerance", "worst tensor"]
    return md_table(head, out)


GROUPS = ("forward", "gradients", "one step", "lockstep")


def parity_summary(rows: list[dict]) -> str:
    """One line per spec: the verdict of each kind of check (every forward check, both gradient
    checks, the step, the lockstep) with its largest fp32 gap."""
    out = []
    for spec in dict.fromkeys(r["spec"] for r in rows):
        mine = [r for r in rows if r["spec"] == spec]
        cells = []
        for g in GROUPS:
            group = [r for r in mine if r["check"].startswith(g)]
            if not group:
                cells.append("-")
                continue
            gap = max(r["extra"]["max_loss_rel"] if r["check"].startswith("lockstep") else r["max_rel"] for r in group)
            cells.append(f"{combine(verdict(r) for r in group)} ({gap:.1e})")
        out.append([spec, mine[0].get("semantics", "-"), *cells])
    steps = next((r["check"].split()[1] for r in rows if r["check"].startswith("lockstep")), "")
    return md_table(["spec", "semantics", "forward (4 checks)", "gradients (D, G)", "one step",
                     f"lockstep ({steps} steps, losses)"], out)


def shape_table(rows: list[dict]) -> str:
    """One line per spec x backend (parity.ShapeCheck as a dict): agree when every shape and count matches."""
    out = [[r["spec"], r["backend"], AGREE if r["ok"] else DIFFER, r["params_spec"]["G"], r["params_backend"]["G"],
            r["params_spec"]["D"], r["params_backend"]["D"], f"{r['build_seconds'] * 1000:.0f} ms",
            "; ".join(r["mismatches"]) or "-"] for r in rows]
    return md_table(["spec", "backend", "shapes", "G params (spec)", "G params (built)",
                     "D params (spec)", "D params (built)", "build time", "mismatches"], out)


def plot_lockstep(rows: list[dict], path: Path) -> Path | None:
    """Per spec, the lockstep's relative loss gap per step against both sides' own fp32 error,
    the fp64 gap and the band of the reference's sensitivity floor (rows: the checks' JSON)."""
    locks = [c for c in rows if c["check"].startswith("lockstep")]
    if not locks:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(locks), figsize=(4.2 * len(locks), 3.4), squeeze=False)
    for ax, c in zip(axes[0], locks):
        e, ref, cand = c["extra"], c["reference"], c["candidate"]
        steps = range(1, len(e["loss_rel_per_step"]) + 1)
        if "fp32_floor_per_step" in e:  # the band: NOISE_FACTOR x the reference's own sensitivity floor
            band = [max(parity.NOISE_FACTOR * v, 1e-17) for v in e["fp32_floor_per_step"]]
            ax.fill_between(steps, 1e-17, band, color="tab:orange", alpha=0.15, step="mid",
                            label=f"{parity.NOISE_FACTOR:g}x {ref}'s sensitivity floor (fp32)")
        ax.semilogy(steps, e["loss_rel_per_step"], "o-", ms=3, label=f"{cand} vs {ref}, fp32")
        if "fp64_loss_rel_per_step" in e:
            ax.semilogy(steps, e["reference_fp32_noise_per_step"], "s--", ms=3, label=f"{ref} fp32 vs fp64")
            ax.semilogy(steps, e["candidate_fp32_noise_per_step"], "v--", ms=3, label=f"{cand} fp32 vs fp64")
            ax.semilogy(steps, [max(v, 1e-17) for v in e["fp64_loss_rel_per_step"]], "^-", ms=3,
                        label=f"{cand} vs {ref}, fp64")
        ax.axhline(parity.LOCKSTEP_RTOL, color="grey", lw=0.8, ls=":")
        ax.set_title(f"{c['spec']}: {verdict(c)}", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("relative loss difference")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return path
