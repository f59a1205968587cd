"""MXNet's semantics, in PyTorch: the one place they are written. The backend builds with them
(build.py, train.py: a spec that follows MXNet), and `ganparity port --semantics mxnet` copies
these classes, as they are, into the model.py it writes (source()): so this file imports nothing
but torch and math, and what users keep is the code the suite tests.

backends/mxnet/emulations.py mirrors it: PyTorch's semantics in MXNet Gluon.
"""

from __future__ import annotations

import contextlib
import inspect
import math

import torch
import torch.nn.functional as F
from torch import nn


class MXNetBatchNorm(nn.modules.batchnorm._BatchNorm):
    """MXNet's (CPU) BatchNorm statistics (difference 'bn-stats'): the running mean and variance
    move when backward reaches the layer, with the biased batch variance, in backward order, and
    not at all for a forward that no backward follows: moving = m * moving + (1 - m) * batch, with
    Gluon's momentum m = 1 - momentum as the float32 MXNet passes its op. The batch moments come
    from F.batch_norm itself (momentum 1.0 into scratch buffers); a hook on the output's gradient
    applies the update. Same tensors and state-dict names as nn.BatchNorm1d/2d/3d."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__(num_features, eps, momentum)

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"expected at least a 2-D input (got {x.dim()}-D)")

    def forward(self, x):
        self._check_input_dim(x)
        if not self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        # scratch in the statistics' dtype, not x's: under bf16 autocast x is bf16, and CPU batch_norm
        # refuses bf16 statistics beside float32 parameters
        mean, var = torch.zeros_like(self.running_mean), torch.ones_like(self.running_var)
        y = F.batch_norm(x, mean, var, self.weight, self.bias, True, 1.0, self.eps)  # batch mean, unbiased var
        if y.requires_grad:
            n = x.numel() // x.shape[1]
            y.register_hook(lambda grad: self._move(mean, var * ((n - 1) / n)))
        return y

    def _move(self, mean, biased_var):
        m = torch.tensor(1.0 - self.momentum, dtype=torch.float32).item()  # Gluon's momentum, as MXNet's op gets it
        with torch.no_grad():
            self.running_mean.mul_(m).add_(mean, alpha=1 - m)
            self.running_var.mul_(m).add_(biased_var, alpha=1 - m)


class GlobalStatsBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Gluon's BatchNorm(use_global_stats=True): the running statistics normalise in train mode
    too, and never move."""

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"expected at least a 2-D input (got {x.dim()}-D)")

    def forward(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


def mxnet_adam_lr_eps(lr, eps, betas, op_betas, t, mxnet_eps=True):
    """The lr and eps that make torch.optim.Adam (whose bias corrections use `op_betas`) take
    MXNet's step t (differences 'adam-eps', 'adam-betas'). MXNet folds the corrections
    c1 = 1 - b1^t, c2 = 1 - b2^t (double precision, from the betas it was given) into the lr and
    adds eps to sqrt(v) uncorrected:  lr sqrt(c2) / c1 * m / (sqrt(v) + eps);  torch's step is
    lr_t / c1' * m / (sqrt(v) / sqrt(c2') + eps_t). They are equal for
    eps_t = E sqrt(c2) / sqrt(c2') and lr_t = lr (c1' / c1) sqrt(c2) / sqrt(c2'), with E = eps /
    sqrt(c2) for MXNet's eps placement (mxnet_eps) and eps for PyTorch's."""
    (b1, b2), (b1_op, b2_op) = betas, op_betas
    c1, c2, c1_op, c2_op = 1 - b1 ** t, 1 - b2 ** t, 1 - b1_op ** t, 1 - b2_op ** t
    e = eps / math.sqrt(c2) if mxnet_eps else eps
    return lr * (c1_op / c1) * math.sqrt(c2) / math.sqrt(c2_op), e * math.sqrt(c2) / math.sqrt(c2_op)


class MXNetAdam(torch.optim.Adam):
    """MXNet's Adam on torch.optim.Adam's kernels: mx.optimizer.Adam folds the bias corrections
    into the learning rate, so its eps is added to sqrt(v) unscaled, and its adam_update op holds
    beta1 and beta2 as float32. Before each step this sets the lr and eps that give MXNet's step
    (mxnet_adam_lr_eps), then puts back the ones you set, so param_groups' lr, eps and betas stay
    MXNet's and a learning-rate scheduler works as on any optimizer. weight_decay is L2 added to
    the gradient, as MXNet's wd."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, **kwargs):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, **kwargs)

    @torch.no_grad()
    def step(self, closure=None):
        kept = []
        for group in self.param_groups:
            state = self.state.get(group["params"][0], {})
            t = int(state["step"]) + 1 if "step" in state else 1
            op_betas = tuple(torch.tensor(b, dtype=torch.float32).item() for b in group["betas"])
            kept.append((group["lr"], group["eps"], group["betas"]))
            lr, eps = mxnet_adam_lr_eps(group["lr"], group["eps"], group["betas"], op_betas, t)
            group["lr"], group["eps"], group["betas"] = lr, eps, op_betas
        try:
            return super().step(closure)
        finally:
            for group, (lr, eps, betas) in zip(self.param_groups, kept):
                group["lr"], group["eps"], group["betas"] = lr, eps, betas


@contextlib.contextmanager
def emulated_stats(model):
    """While inside, every BatchNorm of `model` moves its running statistics as MXNet does
    (MXNetBatchNorm: in backward, biased variance), with its own momentum; afterwards it is the
    layer it was."""
    changed = [(m, m.__class__) for m in model.modules() if type(m) in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)]
    for m, _ in changed:
        m.__class__ = MXNetBatchNorm
    try:
        yield len(changed)
    finally:
        for m, cls in changed:
            m.__class__ = cls


# MXNet ops that take more than one torch expression, written once here for the porter's model.py
# (common/port/ops.py names them; source() copies them): the Gluon side has the op itself, so they
# have no mirror in backends/mxnet/emulations.py
PORT_OPS = ("box_nms", "box_decode", "roi_align_position_sensitive", "softmax_with_length", "sequence_mask",
            "topk_ties_in_order", "interleaved_matmul_selfatt_qk", "interleaved_matmul_selfatt_valatt",
            "interleaved_matmul_encdec_qk", "interleaved_matmul_encdec_valatt")


def _float32(v):
    """A float setting as MXNet's op holds it (its parameter structs declare float): what a float64
    run compares and multiplies with."""
    return torch.tensor(v, dtype=torch.float32).item()


def box_nms(data, overlap_thresh=0.5, valid_thresh=0.0, topk=-1, coord_start=2, score_index=1, id_index=-1,
            background_id=-1, force_suppress=False, in_format="corner", out_format="corner"):
    """MXNet's contrib.box_nms on torchvision.ops.nms: each row of `data` (..., boxes, width) is a
    box; the boxes whose score is > valid_thresh (and, with id_index, whose class id is not
    background_id) are sorted by score, ties in index order; the first `topk` of them go through
    greedy NMS (a box suppresses a later one of the same class, truncated to an integer, or of any
    class with force_suppress, at IoU > overlap_thresh); the survivors' whole rows come first in
    that order, every other row is -1 (same shape as data). The thresholds are the float32 values
    MXNet's op holds. torchvision.ops.nms orders by score itself: it gets each box's rank, so ties
    keep MXNet's order. Coordinates are converted to out_format only where the first one is >= 0
    (MXNet skips the others); the gradient reaches each kept row as it is, as MXNet's backward
    copies it, conversion or not."""
    import torchvision

    if topk == 0:
        return data
    overlap, valid_min = _float32(overlap_thresh), _float32(valid_thresh)
    rows = data.reshape(-1, data.shape[-2], data.shape[-1])
    out = torch.full_like(rows, -1.0)
    for b, boxes in enumerate(rows):
        score = boxes[:, score_index]
        valid = score > valid_min
        if id_index >= 0:
            valid = valid & (boxes[:, id_index] != background_id)
        index = torch.nonzero(valid).flatten()
        index = index[torch.sort(score[index], descending=True, stable=True).indices][:topk if topk > 0 else None]
        if len(index) == 0:
            continue
        coords = boxes[index, coord_start:coord_start + 4].detach()
        if in_format == "center":
            half = coords[:, 2:] / 2
            coords = torch.cat([coords[:, :2] - half, coords[:, :2] + half], dim=1)
        rank = torch.arange(len(index), 0, -1, dtype=coords.dtype, device=coords.device)
        if id_index >= 0 and not force_suppress:
            ids = boxes[index, id_index].long()
            keep = torch.cat([group[torchvision.ops.nms(coords[group], rank[group], overlap)]
                              for group in (torch.nonzero(ids == c).flatten() for c in ids.unique())]).sort().values
        else:
            keep = torchvision.ops.nms(coords, rank, overlap)
        kept = boxes[index[keep]]
        if in_format != out_format:
            xy, far = kept[:, coord_start:coord_start + 2], kept[:, coord_start + 2:coord_start + 4]
            if out_format == "center":
                new = torch.cat([(xy + far) / 2, far - xy], dim=1)
            else:
                new = torch.cat([xy - far / 2, xy + far / 2], dim=1)
            raw = kept[:, coord_start:coord_start + 4]
            moved = torch.where(xy[:, :1] >= 0, new, raw)
            moved = moved.detach() + (raw - raw.detach())  # MXNet's backward passes the gradient through unconverted
            kept = torch.cat([kept[:, :coord_start], moved, kept[:, coord_start + 4:]], dim=1)
        out[b, :len(kept)] = kept
    return out.reshape(data.shape)


def box_decode(deltas, anchors, stds=(1.0, 1.0, 1.0, 1.0), clip=-1.0, format="center"):
    """MXNet's contrib.box_decode: (batch, n, 4) deltas against anchors[0] ((n, 4), corner or
    center) -> corner boxes; the width and height deltas capped at `clip` when it is > 0. The
    same arithmetic in the same order as MXNet's kernel, with its float32 settings. No gradient
    reaches the deltas or the anchors, as in MXNet (its backward gives both zeros: a detector trains
    on its raw predictions, never through the decoded boxes)."""
    deltas, anchors = deltas.detach(), anchors.detach()
    std0, std1, std2, std3 = (_float32(s) for s in stds)
    a = anchors[0]
    ax, ay, aw, ah = a.unbind(-1)
    if format == "corner":
        aw, ah = aw - ax, ah - ay
        ax, ay = ax + aw * 0.5, ay + ah * 0.5
    x, y, w, h = deltas.unbind(-1)
    ox, oy = x * std0 * aw + ax, y * std1 * ah + ay
    dw, dh = w * std2, h * std3
    if clip > 0:
        dw, dh = torch.clamp(dw, max=_float32(clip)), torch.clamp(dh, max=_float32(clip))
    ow, oh = torch.exp(dw) * aw * 0.5, torch.exp(dh) * ah * 0.5
    return torch.stack([ox - ow, oy - oh, ox + ow, oy + oh], dim=-1)


def roi_align_position_sensitive(data, rois, output_size, spatial_scale, sampling_ratio):
    """MXNet's contrib.ROIAlign(position_sensitive=True, aligned=False): bin (i, j) of output
    channel c pools input channel (c * ph + i) * pw + j, with ROIAlign's unaligned sampling
    (torchvision.ops.ps_roi_align samples as aligned=True does)."""
    import torchvision

    ph, pw = output_size
    full = torchvision.ops.roi_align(data, rois, output_size, spatial_scale, sampling_ratio, aligned=False)
    r, c = full.shape[0], full.shape[1] // (ph * pw)
    bins = full.reshape(r, c, ph, pw, ph, pw)
    i, j = torch.arange(ph, device=data.device), torch.arange(pw, device=data.device)
    return bins[:, :, i[:, None], j[None, :], i[:, None], j[None, :]]


def softmax_with_length(x, length, dim=-1, temperature=1.0):
    """MXNet's softmax(use_length=True): along `dim` only the first `length` entries of each row
    take part (length has x's shape without dim), the others are 0, and a row of length 0 is all
    0 (a -inf mask alone would make it NaN)."""
    steps = torch.arange(x.shape[dim], device=x.device).reshape([-1] + [1] * (x.dim() - 1 - dim % x.dim()))
    keep = steps < length.unsqueeze(dim)
    y = torch.softmax(x.masked_fill(~keep, float("-inf")) / temperature, dim=dim)
    return y.masked_fill(~keep, 0.0)


def sequence_mask(x, length, value=0.0, axis=0):
    """MXNet's SequenceMask: x is (time, batch, ...) (axis=0) or (batch, time, ...) (axis=1); the
    steps at and after each sequence's length (truncated to an integer) are set to `value`."""
    steps = torch.arange(x.shape[axis], device=x.device)
    keep = steps[:, None] < length.long()[None, :]  # (time, batch)
    if axis == 1:
        keep = keep.t()
    return x.masked_fill(~keep.reshape(keep.shape + (1,) * (x.dim() - 2)), value)


def topk_ties_in_order(x, k, dim=-1, largest=True, index_dtype=None):
    """torch.topk with ties in index order, as MXNet's CPU topk gives them along an axis of up to
    16 entries (its std::sort is an insertion sort there; beyond, libstdc++'s introsort orders
    ties in a way no torch op reproduces, and torch.topk in none at all). Returns (values,
    indices), the indices cast to index_dtype (MXNet's topk returns them as float32 by default)."""
    values, indices = torch.sort(x, dim=dim, descending=largest, stable=True)
    values, indices = values.narrow(dim, 0, k), indices.narrow(dim, 0, k)
    return values, indices if index_dtype is None else indices.to(index_dtype)


def _heads(x, heads, parts):
    """(time, batch, heads * parts * d) -> `parts` tensors (batch * heads, time, d)."""
    t, b = x.shape[0], x.shape[1]
    split = x.reshape(t, b, heads, parts, -1).permute(3, 1, 2, 0, 4)
    return [p.reshape(b * heads, t, -1) for p in split]


def interleaved_matmul_selfatt_qk(qkv, heads):
    """GluonNLP BERT's fused self-attention scores (MXNet contrib.interleaved_matmul_selfatt_qk):
    qkv is (time, batch, heads * 3 * d), each head's query, key and value side by side; returns
    (batch * heads, time, time) = (q / sqrt(d)) k^T."""
    q, k, _ = _heads(qkv, heads, 3)
    return torch.bmm(q / math.sqrt(q.shape[-1]), k.transpose(1, 2))


def interleaved_matmul_selfatt_valatt(qkv, attention, heads):
    """MXNet contrib.interleaved_matmul_selfatt_valatt: the attention weights (batch * heads, time,
    time) applied to the values of qkv; returns (time, batch, heads * d)."""
    _, _, v = _heads(qkv, heads, 3)
    out = torch.bmm(attention, v)
    t, b = qkv.shape[0], qkv.shape[1]
    return out.reshape(b, heads, t, -1).permute(2, 0, 1, 3).reshape(t, b, -1)


def interleaved_matmul_encdec_qk(queries, keys_values, heads):
    """MXNet contrib.interleaved_matmul_encdec_qk: queries (tq, batch, heads * d), keys_values
    (tk, batch, heads * 2 * d) interleaved per head; returns (batch * heads, tq, tk) = (q / sqrt(d)) k^T."""
    [q] = _heads(queries, heads, 1)
    k, _ = _heads(keys_values, heads, 2)
    return torch.bmm(q / math.sqrt(q.shape[-1]), k.transpose(1, 2))


def interleaved_matmul_encdec_valatt(keys_values, attention, heads):
    """MXNet contrib.interleaved_matmul_encdec_valatt: attention (batch * heads, tq, tk) applied to
    the values of keys_values; returns (tq, batch, heads * d)."""
    _, v = _heads(keys_values, heads, 2)
    out = torch.bmm(attention, v)
    b, tq = keys_values.shape[1], attention.shape[1]
    return out.reshape(b, heads, tq, -1).permute(2, 0, 1, 3).reshape(tq, b, -1)


def source(names):
    """The source text of these classes and functions, by name, for the model.py the porter
    writes (each depends only on torch, math and the ones listed before it)."""
    return "\n\n\n".join(inspect.getsource(globals()[n]).rstrip() for n in names)
