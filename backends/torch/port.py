"""`ganparity port`, the torch side: read the written port back (import model.py by path, load
the neutral weights strictly, save weights.pt, run it once) and run K training steps of it with
the optimizer model.py itself writes, for the proof. The Gluon side (backends/mxnet/port.py)
reads the source block and runs the same steps.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...common.errors import GanparityError


def _import(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclass / pickle lookups by module name
    spec.loader.exec_module(module)
    return module


def read(model: Any, shape: tuple[int, ...], params: str | None = None, seed: int = 0) -> dict:
    """The written port in folder `model`, read back: model.py imported by path, the weights of
    `params` (weights.npz, by torch state-dict name) loaded strictly, weights.pt saved beside,
    one eval forward at `shape`. Returns {'model', 'module', 'out_shapes'}; any failure is a
    GanparityError (the port wrote code that does not run: a bug of the porter)."""
    folder = Path(model)
    try:
        module = _import(folder / "model.py", f"ganparity_port_{abs(hash(str(folder)))}")
        net = module.build()
        arrays = dict(np.load(params or folder / "weights.npz"))
        state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
        full = net.state_dict()
        state.update({k: v for k, v in full.items() if k.endswith("num_batches_tracked")})
        net.load_state_dict(state, strict=True)
        torch.save(net.state_dict(), folder / "weights.pt")
        net.eval()
        x = torch.from_numpy(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))
        with torch.no_grad():
            out = net(x)
    except Exception as e:
        raise GanparityError(f"the written port does not run: {type(e).__name__}: {str(e).splitlines()[0][:300]}"
                             ) from None
    outs = out if isinstance(out, tuple | list) else (out,)
    return {"model": net, "module": module, "out_shapes": [tuple(o.shape) for o in outs]}


def _state(net: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()
            if not k.endswith("num_batches_tracked")}


def train_states(model: Any, x: np.ndarray, steps: int, setting: dict, dtype: str = "float32",
                 start: dict | None = None) -> list[dict]:
    """K steps of the port (loss: the sum of the outputs, train mode) with model.py's own
    make_optimizer (the --trainer it was written for; `setting` is that trainer, for the
    record): the state after each, by state-dict name; the first entry is the state before."""
    net = model
    net.to(getattr(torch, dtype))
    if start is not None:
        cur = net.state_dict()
        net.load_state_dict({k: (torch.from_numpy(np.asarray(start[k])).to(cur[k].dtype) if k in start else v)
                             for k, v in cur.items()})
    make = sys.modules[type(net).__module__].make_optimizer
    opt = make(net)
    xs = torch.from_numpy(x.astype(dtype))
    net.train()
    states = [_state(net)]
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        out = net(xs)
        outs = out if isinstance(out, tuple | list) else (out,)
        sum(o.sum() for o in outs).backward()
        opt.step()
        states.append(_state(net))
    net.to(torch.float32)
    return states
