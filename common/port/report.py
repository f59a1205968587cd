"""What a port tells its user: the console lines of `ganparity port` and PORT.md (every semantic
choice, every row's verdict with the numbers behind it, and which hyperparameters the proof saw)."""

from __future__ import annotations

from ..verdicts import AGREE, CANNOT_TELL, DIFFER, FLOOR_FACTOR, NOISE_FACTOR, SEE, TELL
from .checks import Proof

VERDICT_WORDS = {
    AGREE: "the row could have seen a wrong change of 1e-4 (relative) in one weight tensor or hyperparameter, "
           "and saw none",
    DIFFER: "the port computes something else here, beyond what float rounding explains",
    CANNOT_TELL: "the row agrees, but so loosely that a wrong change of 1e-4 would not have shown (fp32 noise and "
                 "the fp64 floor are both too wide): it proves nothing here, and says what would make it tellable",
}


def console_lines(proof: Proof) -> list[str]:
    lines = []
    for r in proof.rows:
        why = ""
        if r.verdict == DIFFER:
            why = f"  {r.reason} ({r.worst})"
        elif r.verdict == CANNOT_TELL:
            why = f"  {r.reason}" + (f"; try {r.suggestion}" if r.suggestion else "")
        lines.append(f"  {r.check:<46} {r.verdict:<16} max rel err {r.max_rel:.3g}{why}")
    return lines


def _inputs(graph: dict | None) -> list[str]:
    """The inputs and, for an imported graph, where the names come from."""
    lines = []
    ins = (graph or {}).get("inputs") or []
    if len(ins) > 1 or any(":" in i["spec"] for i in ins):
        lines.append("- inputs: " + "; ".join(f"`{i['arg']}` {i['spec']} (graph input '{i['name']}')" for i in ins)
                     + ": an 'int' input is drawn as whole numbers in its range (both ends included), held as "
                       "float32 as Gluon's models take token ids")
    if (graph or {}).get("symbol"):
        lines.append("- an imported graph (a SymbolBlock, what export() wrote): there is no Python block tree, so "
                     "model.py is the flat form, one class, each layer named after its symbol node (the graph's "
                     "common prefix left out); the proof's forward rows compare the final outputs, as the "
                     "SymbolBlock has no layers to hook")
    return lines


def port_md(graph_class: str, command: str, p, choices: list[str], proof: Proof, semantics: str,
            seconds: dict[str, float], source: str, graph: dict | None = None) -> str:
    lines = [f"# Port of `{graph_class}`", "", f"Written by `{command}`; the Gluon parameters: {source}.", "",
             f"**Verdict: {proof.verdict}.** " + VERDICT_WORDS[proof.verdict], "",
             f"- class `{p.class_name}` in model.py: {len(p.layers)} layers, {len(p.tensor_map)} tensors mapped "
             "(every Gluon parameter and running statistic; mapping.json pairs each torch name with its Gluon name)",
             f"- semantics: **{semantics}**" + (" (model.py imports only torch)" if semantics == "torch" else
                                               " (MXNet's BatchNorm statistics and Adam are written into model.py, "
                                               "which imports only torch)"),
             f"- port time {seconds['port']:.2f} s (read + write), proof {seconds['proof']:.2f} s", *_inputs(graph), "",
             "## Semantic choices", ""]
    lines += [f"- {c}" for c in choices]
    lines += ["- train/eval: Gluon uses batch statistics only inside autograd.record(); torch in model.train()",
              "- loss-reduction: Gluon's losses are per sample and trainer.step(batch_size) divides by the batch "
              "size; train the port the same way: sum the per-sample losses into backward(), then "
              "gluon_step(optimizer, batch_size) (with a batch-mean loss, gluon_step(optimizer, 1))",
              "- grad_req: Gluon's default 'write' overwrites gradients, torch accumulates: call "
              "optimizer.zero_grad() before each backward (two backward() calls per step sum in torch)",
              "- dropout: off in the proof's train-mode rows and steps on both sides (each framework draws its own "
              "masks); the rates are compared in a row of their own", "",
              "## The proof", "",
              "Three verdicts (common/verdicts.py):", ""]
    lines += [f"- **{v}**: {w}" for v, w in VERDICT_WORDS.items()]
    lines += ["", f"A row compares the port with the Gluon block in float32 and in float64. Its allowances: fp32, "
              f"1e-5 or {NOISE_FACTOR:g}x the fp32 noise (each side's float32 against its own float64); fp64, "
              f"{FLOOR_FACTOR:g}x the floor (the port again, its constants rounded to float32 as MXNet passes them). "
              f"Agree needs an allowance of at most {TELL:g}. The step rows compare the update since the start. "
              "`ganparity port` exits 0 when every row agrees, 1 when a row differs, 3 when none differs but some "
              "cannot tell; test_port.py fails when a row that agreed no longer does.", "",
              "| check | verdict | max rel err (fp32) | fp32 noise | fp64 gap | fp64 floor | deciding tensor | why |",
              "|---|---|---|---|---|---|---|---|"]
    for r in proof.rows:
        why = r.reason + (f"; try {r.suggestion}" if r.suggestion else "") if r.verdict != AGREE else ""
        lines.append(f"| {r.check} | {r.verdict} | {r.max_rel:.3g} | {r.noise:.2g} | {r.fp64_gap:.2g} | "
                     f"{r.floor:.2g} | {r.worst or '-'} | {why or '-'} |")
    if proof.coverage:
        lines += ["", f"### What the proof could have seen (each hyperparameter changed by {SEE:g} in the port)", "",
                  "| hyperparameter | rows that would have shown it |", "|---|---|"]
        lines += [f"| {h} | {', '.join(rows) if rows else '**none**'} |" for h, rows in proof.coverage.items()]
    if proof.notes:
        lines += ["", *[f"- {n}" for n in proof.notes]]
    lines += ["", "## Layers", "", "| torch attribute | Gluon block | Gluon op | torch layer |", "|---|---|---|---|"]
    for layer in p.layers:
        lines.append(f"| {layer.attr} | {layer.path} | {layer.gluon} | `{layer.ctor}` |")
    return "\n".join(lines) + "\n"
