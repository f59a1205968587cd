"""The parity report, an application over the core: every GAN spec x backend checked for shapes,
numbers (forward, gradients, one step, lockstep) and data-parallel training, written as markdown,
JSON and a plot (`ganparity report`, `ganparity parity`; the command layer only parses arguments).

    parity.py         the report's widths, run_parity (the numerical checks of some specs under a
                      chosen semantics), the shape and parity tables, the lockstep plot
    data_parallel.py  real 2-worker `ganparity train --nproc 2` runs, compared by their checkpoints
    write.py          the whole report: report.md, results.json, lockstep.png

The tables render from the JSON the report writes (results.json), so the docs' copies of them are
regenerated from the committed data (`ganparity docs`) rather than typed.
"""
