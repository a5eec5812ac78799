"""Probe tasks on a briefly trained network: exact identities, measured in float64.

``invariance``: rescale every scale-invariant weight (each unit of a BN/WN weight by its own
factor ``a * u``, ``u`` log-uniform in [1/2, 2]; an LN weight as a whole by ``a``) and measure,
on one batch in training mode (batch statistics), how far the loss, the softmax outputs and
the gradients move. Identities 1-2 of THEORY.md: ``L(a w) = L(w)``, ``g(a w) = g(w)/a``, and
the other parameters' gradients do not change. Exact only with the normalization's eps = 0,
so it is measured both with eps = 0 and with the layers' own eps (1e-5).

``one_step``: rescale one layer's weight by ``c``, take one optimizer step from a fresh state,
and measure the angle each unit turns (identity 3: ``tan(angle) ~ c^-2`` for SGD exactly,
``~ c^-1`` for Adam up to eps and the radial part of its step).
"""

import copy
import time

import numpy as np

from refnet import backend
from refnet.experiments.tasks import build_model, load_data
from refnet.invariance import angular_update
from refnet.nn.models import trainable_parameters
from refnet.nn.norm import LayerNorm, _BatchNorm
from refnet.ops import softmax_cross_entropy
from refnet.optim import SGD, Adam
from refnet.train import Trainer


def trained_model(spec):
    """The spec's model after ``train_steps`` of SGD (lr ``train_lr``), and the data."""
    backend.use(spec.get("device", "cpu"))
    data = load_data(spec["data"])
    model = build_model(spec["model"], data)
    if spec.get("train_steps", 0):
        opt = SGD(trainable_parameters(model), lr=spec.get("train_lr", 0.1), momentum=0.9)
        Trainer(model, opt, data, steps=spec["train_steps"], seed=spec.get("seed", 0), progress=False,
                eval_every_epoch=False).fit()
    return model, data


def _batch(data, n, dtype):
    x = backend.to_device(np.asarray(data.x_test[:n], dtype=dtype))
    return x, backend.to_device(np.asarray(data.y_test[:n], dtype=np.int64))


def _with_eps(model, eps):
    net = copy.deepcopy(model).double().train()
    for m in net.modules():
        if isinstance(m, (_BatchNorm, LayerNorm)) and eps is not None:
            m.eps = eps
    return net


def _evaluate(net, x, y):
    net.zero_grad()
    logits = net(x)
    loss, dlogits = softmax_cross_entropy(logits, y)
    net.backward(dlogits)
    z = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(backend.asnumpy(z))
    probs /= probs.sum(axis=1, keepdims=True)
    return backend.scalar(loss), probs, {n: backend.asnumpy(p.grad).copy() for n, p in net.named_parameters()}


def _rel(a, b, floor):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), floor))


def invariance_task(spec):
    """Arrays ``scales`` and, for variant in ``eps0`` / ``eps``, ``<variant>/{loss,prob,grad,others}``:
    the relative loss change, the largest change of a softmax output, the largest relative
    error of ``g(a w) = g(w)/a`` over the scaled weights, and the largest relative change of
    the other parameters' gradients, per scale ``a``."""
    t0 = time.perf_counter()
    model, data = trained_model(spec)
    x, y = _batch(data, spec.get("batch", 512), np.float64)
    scales = np.asarray(spec["scales"], dtype=np.float64)
    arrays = {"scales": scales}
    for variant, eps in (("eps0", 0.0), ("eps", None)):
        net = _with_eps(model, eps)
        named = dict(net.named_parameters())
        marked = [n for n, p in named.items() if p.scale_group is not None]
        others = [n for n, p in named.items() if p.scale_group is None and getattr(p, "requires_grad", True)]
        loss0, probs0, g0 = _evaluate(net, x, y)
        floor = 1e-6 * max(np.linalg.norm(g) for g in g0.values())
        rng = np.random.default_rng(spec.get("seed", 0))
        errs = {k: [] for k in ("loss", "prob", "grad", "others")}
        for a in scales:
            factors, saved = {}, {}
            for n in marked:
                p = named[n]
                shape = (p.shape[0],) + (1,) * (p.data.ndim - 1) if p.scale_group == "unit" else (1,) * p.data.ndim
                u = np.exp(rng.uniform(-np.log(2), np.log(2), size=shape)) if p.scale_group == "unit" else 1.0
                factors[n], saved[n] = a * u, p.data.copy()
                p.data *= backend.to_device(np.asarray(factors[n]))
            loss1, probs1, g1 = _evaluate(net, x, y)
            for n in marked:
                named[n].data[...] = saved[n]
            errs["loss"].append(abs(loss1 - loss0) / abs(loss0))
            errs["prob"].append(float(np.abs(probs1 - probs0).max()))
            errs["grad"].append(max(_rel(factors[n] * g1[n], g0[n], floor) for n in marked))
            errs["others"].append(max([_rel(g1[n], g0[n], floor) for n in others] or [0.0]))
        arrays.update({f"{variant}/{k}": np.asarray(v) for k, v in errs.items()})
    return arrays, {"norm": spec["model"].get("norm"), "loss": loss0, "seconds": time.perf_counter() - t0}


def one_step_task(spec):
    """Arrays ``c`` and ``<optimizer>/<weight>/{angle,tan}``: the RMS over units of the angle
    (and of its tangent) one step turns each unit after that weight was multiplied by ``c``, from a fresh optimizer
    (SGD at ``sgd_lr``, Adam at ``adam_lr`` with eps ``adam_eps``), BN eps = 0, float64."""
    t0 = time.perf_counter()
    model, data = trained_model(spec)
    x, y = _batch(data, spec.get("batch", 512), np.float64)
    cs = np.asarray(spec["c"], dtype=np.float64)
    net = _with_eps(model, 0.0)
    named = dict(net.named_parameters())
    arrays, meta = {"c": cs}, {"d": {}}
    for name, p in named.items():
        if p.scale_group is None:
            continue
        meta["d"][name] = int(np.prod(p.shape[1:]))
        original = p.data.copy()
        for opt_name in ("sgd", "adam"):
            angles, tans = [], []
            for c in cs:
                p.data[...] = original * c
                _evaluate(net, x, y)
                before = p.data.copy()
                opt = (SGD([p], lr=spec["sgd_lr"]) if opt_name == "sgd"
                       else Adam([p], lr=spec["adam_lr"], eps=spec.get("adam_eps", 1e-8)))
                opt.step()
                theta = backend.asnumpy(angular_update(before, p.data, p.scale_group))
                angles.append(float(np.sqrt(np.mean(theta ** 2))))
                tans.append(float(np.sqrt(np.mean(np.tan(theta) ** 2))))
            arrays[f"{opt_name}/{name}/angle"] = np.asarray(angles)
            arrays[f"{opt_name}/{name}/tan"] = np.asarray(tans)
        p.data[...] = original
    meta["seconds"] = time.perf_counter() - t0
    return arrays, meta
