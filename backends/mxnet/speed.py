"""The networks a port's speed is measured against, and one train step and one eval forward of
each (`ganparity bench port-speed`): here the Gluon model-zoo network itself, the source the port
was written from; in backends/torch/speed.py torchvision's hand-written twin of it.

MXNet counts no FLOPs (model_size gives None for them); its convolutions take NCHW on CPU only,
so the one layout is 'contiguous'.
"""

from __future__ import annotations

import inspect

import mxnet as mx
from mxnet import autograd, gluon

LAYOUTS = ("contiguous",)
# every network of Gluon's vision zoo (its get_model's names)
SPEED_MODELS = tuple(n for n, f in vars(gluon.model_zoo.vision).items()
                     if inspect.isfunction(f) and not n.startswith(("get_", "_")))


def zoo_model(name: str, edited: bool = True, seed: int = 0) -> tuple[gluon.Block, dict]:
    """(the Gluon zoo network `name`, initialized and hybridized, {'name', 'edited', 'difference'});
    `edited` is torch's (its twin edited into Gluon's network): the Gluon network is the network."""
    mx.random.seed(seed)
    net = getattr(gluon.model_zoo.vision, name)()  # the function (get_model spells some names otherwise)
    net.initialize(mx.init.Xavier())
    net.hybridize(static_alloc=True, static_shape=True)
    return net, {"name": f"gluon {name} (the source, hybridized)", "edited": False, "difference": ""}


def edit_written(name: str, model: gluon.Block) -> tuple[gluon.Block, str] | None:
    """None: the written model is torch's (torch's edit_written edits it to name a ratio's cause)."""
    return None


def model_size(model: gluon.Block, shape: tuple[int, ...]) -> tuple[float | None, int]:
    """(None: MXNet counts no FLOPs, parameters and running statistics)."""
    model(mx.nd.zeros(shape))  # deferred shapes
    return None, sum(int(p.data().size) for p in model.collect_params().values())


def speed_arms(models: dict, x, labels, layouts: tuple[str, ...] | None = None) -> dict:
    """For each model, '{name} contiguous train' (SGD with momentum through a Trainer: forward,
    softmax cross-entropy, backward, step) and '{name} contiguous eval' (a forward outside
    autograd's recording), from the same input (numpy) and labels; other layouts have no arm here.
    MXNet is asynchronous: the timing syncs with mx.nd.waitall() (device.sync) around each round."""
    xi, y = mx.nd.array(x), mx.nd.array(labels)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    arms = {}
    for name, net in models.items():
        trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 1e-3, "momentum": 0.9})

        def train(net=net, trainer=trainer):
            with autograd.record():
                loss = loss_fn(net(xi), y)
            loss.backward()
            trainer.step(xi.shape[0])
            return loss

        def evaluate(net=net):
            return net(xi)

        for layout in [lay for lay in layouts or LAYOUTS if lay in LAYOUTS]:
            arms[f"{name} {layout} train"] = train
            arms[f"{name} {layout} eval"] = evaluate
    return arms
