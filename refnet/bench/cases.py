"""The cases ``refnet bench`` times: forward+backward of each op on CIFAR-style shapes,
training steps of the default networks, and the per-step recording with and without it.

Each ``Case`` holds zero-argument callables for refnet and (when a ``TorchSide`` is given)
PyTorch, and the matrix-product FLOPs of one call (None for memory-bound ops).
"""

from types import SimpleNamespace

import numpy as np

from refnet import backend
from refnet.nn.models import cnn, mlp, trainable_parameters
from refnet.ops import (batchnorm_backward, batchnorm_forward, conv2d_backward, conv2d_forward,
                        layernorm_backward, layernorm_forward, linear_backward, linear_forward,
                        maxpool2d_backward, maxpool2d_forward, softmax_cross_entropy)
from refnet.optim import SGD

# (name, N, C, F, H, kernel, stride, padding): the three 3x3 shapes of a CIFAR-style
# 3-block CNN at batch 128, a 1x1 and a stride-2 conv.
CONVS = (("conv3x3 3->32 @32", 3, 32, 32, 3, 1, 1),
         ("conv3x3 32->64 @16", 32, 64, 16, 3, 1, 1),
         ("conv3x3 64->128 @8", 64, 128, 8, 3, 1, 1),
         ("conv1x1 64->128 @16", 64, 128, 16, 1, 1, 0),
         ("conv3x3/2 32->64 @32", 32, 64, 32, 3, 2, 1))
# (name, in_channels, image_size, widths) for cnn(): the default net on Fashion-MNIST and
# CIFAR-sized inputs, and the 3-block net whose step the target is about.
NETS = (("step cnn 1x28x28", 1, 28, (32, 64)),
        ("step cnn 3x32x32", 3, 32, (32, 64)),
        ("step cnn3 3x32x32", 3, 32, (32, 64, 128)))


class Case:
    """One benchmark: zero-argument callables for refnet and (maybe) a baseline, and the
    matrix-product FLOPs of one call (None for memory-bound ops). The baseline is PyTorch
    (``baseline="torch"``), or for the recorder cases the same step without recording
    (``baseline="unrecorded"``), or for the second-order cases one forward-backward of the
    model (``baseline="forward-backward"``), timed in the ``torch_fn`` slot in every case."""

    def __init__(self, name, refnet_fn, torch_fn=None, flops=None, baseline="torch"):
        self.name, self.refnet_fn, self.torch_fn, self.flops = name, refnet_fn, torch_fn, flops
        self.baseline = baseline


def _conv_flops(n, c, f, ho, wo, k):
    return 3 * 2 * n * f * c * k * k * ho * wo      # forward, dw and dcols products


def _model_flops(model, x_shape):
    """Matrix-product FLOPs of a training step's forward+backward of ``model``: 3 products per
    conv/linear (forward, dw, dx), but 2 for the first, whose dx is not computed (its input is
    data: ``backward_params``, as PyTorch skips it)."""
    flops, shape, products = 0, x_shape, 2
    for layer in model:
        kind = type(layer).__name__
        if kind == "Conv2d":
            (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, layer.padding
            ho, wo = (shape[2] + 2 * ph - kh) // sh + 1, (shape[3] + 2 * pw - kw) // sw + 1
            flops += products * 2 * shape[0] * layer.out_channels * layer.in_channels * kh * kw * ho * wo
            products = 3
            shape = (shape[0], layer.out_channels, ho, wo)
        elif kind == "MaxPool2d":
            shape = shape[:2] + tuple(s // k for s, k in zip(shape[2:], layer.kernel_size))
        elif kind == "Flatten":
            shape = (shape[0], int(np.prod(shape[1:])))
        elif kind == "Linear":
            flops += products * 2 * shape[0] * layer.in_features * layer.out_features
            products = 3
            shape = (shape[0], layer.out_features)
    return flops


def make_cases(batch=128, torch_side=None, only=None):
    """The benchmark cases at batch size ``batch``; ``torch_side`` is a
    ``torch_side.TorchSide`` or None; ``only``: keep names containing that substring."""
    rng = np.random.default_rng(0)
    dev = backend.to_device

    def arr(*shape):
        return dev(rng.standard_normal(shape).astype(np.float32))

    ts = torch_side
    cases = []
    for name, c, f, h, k, s, p in CONVS:
        x, w, b = arr(batch, c, h, h), arr(f, c, k, k) * 0.1, arr(f)
        ho = (h + 2 * p - k) // s + 1
        dy = arr(batch, f, ho, ho)

        def conv(x=x, w=w, b=b, dy=dy, s=s, p=p):
            conv2d_backward(dy, conv2d_forward(x, w, b, s, p)[1])
        cases.append(Case(name, conv, ts and ts.op("conv2d", (x, w, b), dy, stride=s, padding=p),
                          _conv_flops(batch, c, f, ho, ho, k)))

    xn, g, beta, dyn = arr(batch, 64, 16, 16), arr(64), arr(64), arr(batch, 64, 16, 16)
    cases.append(Case("batchnorm2d (N,64,16,16)",
                      lambda: batchnorm_backward(dyn, batchnorm_forward(xn, g, beta)[1]),
                      ts and ts.op("batch_norm", (xn, g, beta), dyn)))
    g2, b2 = arr(64, 16, 16), arr(64, 16, 16)
    cases.append(Case("layernorm (N,64,16,16)",
                      lambda: layernorm_backward(dyn, layernorm_forward(xn, g2, b2)[1]),
                      ts and ts.op("layer_norm", (xn, g2, b2), dyn)))
    xm, dym = arr(batch, 32, 32, 32), arr(batch, 32, 16, 16)
    cases.append(Case("maxpool2d 2x2 (N,32,32,32)",
                      lambda: maxpool2d_backward(dym, maxpool2d_forward(xm, 2)[1]),
                      ts and ts.op("max_pool2d", (xm,), dym, kernel_size=2)))
    xl, wl, bl, dyl = arr(batch, 1024), arr(1024, 1024) * 0.03, arr(1024), arr(batch, 1024)
    cases.append(Case("linear 1024->1024",
                      lambda: linear_backward(dyl, linear_forward(xl, wl, bl)[1]),
                      ts and ts.op("linear", (xl, wl, bl), dyl), 3 * 2 * batch * 1024 * 1024))

    nets = [(name, cnn(c, image_size=size, widths=widths, norm="bn", rng=0), (c, size, size))
            for name, c, size, widths in NETS]
    nets.append(("step mlp 784-256-256 (BN)", mlp(784, width=256, depth=2, norm="bn", rng=0),
                 (1, 28, 28)))      # the network `refnet reproduce` trains
    for name, model, shape in nets:
        xs = arr(batch, *shape)
        ys = dev(rng.integers(0, 10, size=batch))
        cases.append(Case(name, training_step(model, xs, ys),
                          ts and ts.step(model, xs, ys), _model_flops(model, xs.shape)))
    cases += recorder_cases(batch, rng)
    cases += curvature_cases(batch, rng, ts)
    return [cs for cs in cases if only is None or only in cs.name]


def training_step(model, x, y, lr=0.01, momentum=0.9, l2=5e-4, opt=None):
    """A callable doing one SGD step of ``model`` on ``(x, y)``, as ``Trainer.train_step``
    does it without its per-step recording: zero_grad, forward, loss, backward, step
    (``opt``: that optimizer instead of a new SGD)."""
    opt = SGD(trainable_parameters(model), lr=lr, momentum=momentum, l2=l2) if opt is None else opt

    def step():
        with np.errstate(all="ignore"):
            model.zero_grad()
            logits = model(x)
            loss, dlogits = softmax_cross_entropy(logits, y)
            loss = backend.scalar(loss)
            model.backward_params(dlogits)
            opt.step()
        return loss, int((logits.argmax(axis=1) == y).sum())
    return step


def recorder_cases(batch, rng, batches=16):
    """A Trainer step with the per-step record ``refnet reproduce`` keeps (``log_every=1``:
    norms, effective lr, angle, G2 of every scale group) against the same step unrecorded,
    for the BN MLP and the default BN CNN; and the same for ``dynamics.Recorder``. The steps
    cycle through ``batches`` batches of noise whose labels are drawn afresh on every pass:
    with fixed labels the MLP fits its 16 batches within about 150 steps, the gradients
    vanish, every step becomes pure weight decay -- radial, which the record takes on its
    exact elementwise path (``dynamics.StepAngles``) -- and the measured overhead climbed
    from 5% to 17% over 800 steps: a number set by how long the bench had run, not by what
    a training run records."""
    from refnet.dynamics import Recorder
    from refnet.train import Trainer
    out = []
    for name, model, shape in (("mlp 784-256-256 (BN)", mlp(784, width=256, depth=2, norm="bn", rng=0),
                                (1, 28, 28)),
                               ("cnn 1x28x28", cnn(1, image_size=28, widths=(32, 64), norm="bn", rng=0),
                                (1, 28, 28))):
        x = rng.standard_normal((batches * batch,) + shape).astype(np.float32)
        y = rng.integers(0, 10, size=batches * batch)
        data = SimpleNamespace(x_train=x, y_train=y, x_test=None, name="bench")
        opt = SGD(trainable_parameters(model), lr=0.01, momentum=0.9, l2=5e-4)
        recorded = Trainer(model, opt, data, batch_size=batch, log_every=1, progress=False)
        plain = Trainer(model, opt, data, batch_size=batch, log_every=2, progress=False)
        plain.step = 1  # train_step records when step % log_every == 0: never, as step stays 1
        out.append(Case(f"record {name}", _cycling(recorded.train_step, x, y, batch, seed=1),
                        _cycling(plain.train_step, x, y, batch, seed=2), baseline="unrecorded"))
        out[-1].trainers = (recorded, plain)
        if name.startswith("mlp"):
            rec_model = mlp(784, width=256, depth=2, norm="bn", rng=0)
            rec_opt = SGD(trainable_parameters(rec_model), lr=0.01, momentum=0.9, l2=5e-4)
            rec = Recorder(rec_model, rec_opt)
            bare = _cycling(lambda xb, yb: training_step(rec_model, xb, yb, opt=rec_opt)(), x, y, batch, seed=3)

            def with_recorder(rec=rec, bare=bare):
                rec.attach()
                try:
                    return bare()
                finally:
                    rec.detach()
            out.append(Case("record mlp 784-256-256 (Recorder)", with_recorder, bare, baseline="unrecorded"))
    return out


def forward_backward(model, x, y):
    """A callable doing one forward and backward of the mean softmax cross-entropy of
    ``model`` on ``(x, y)``, into ``.grad``: the unit a Hessian-vector product is priced in."""
    def call():
        model.zero_grad()
        model.backward(softmax_cross_entropy(model(x), y)[1])
    return call


def curvature_cases(batch, rng, torch_side=None):
    """``model.hvp`` and ``model.gvp`` (issue 17) against one forward-backward of the same
    model on the same batch (``baseline="forward-backward"``; the target is an hvp in at most
    2.5x that), for the BN MLP at ``batch`` and the default BN CNN at ``batch // 2`` (128 and
    64 by default); and, when PyTorch is compared, refnet's hvp against ``torch.func``'s
    (forward-mode over reverse-mode: ``jvp`` of ``grad``) on the same twin network."""
    dev = backend.to_device
    out = []
    for name, model, shape, n in (("mlp 784-256-256 (BN)", mlp(784, width=256, depth=2, norm="bn", rng=0),
                                   (1, 28, 28), batch),
                                  ("cnn 1x28x28", cnn(1, image_size=28, widths=(32, 64), norm="bn", rng=0),
                                   (1, 28, 28), max(2, batch // 2))):
        x = dev(rng.standard_normal((n,) + shape).astype(np.float32))
        y = dev(rng.integers(0, 10, size=n))
        v = {k: dev(rng.standard_normal(p.shape).astype(p.dtype)) for k, p in model.named_parameters()}
        unit = forward_backward(model, x, y)
        for product in ("hvp", "gvp"):
            fn = getattr(model, product)
            out.append(Case(f"{product} {name} @{n}", lambda fn=fn, x=x, y=y, v=v: fn(x, y, v), unit,
                            baseline="forward-backward"))
            out[-1].model = model
        if torch_side is not None:
            out.append(Case(f"hvp {name.replace(' (BN)', '')} @{n} (torch)", lambda m=model, x=x, y=y, v=v: m.hvp(x, y, v),
                            torch_side.hvp(model, x, y, v)))
    return out


def _cycling(step, x, y, batch, seed=None):
    """A callable doing ``step(x_batch, y_batch)`` on the next of the batches of ``(x, y)``;
    with ``seed``, the labels are drawn afresh (0..9) at the start of every pass."""
    batches = [(backend.to_device(x[i:i + batch]), backend.to_device(y[i:i + batch]))
               for i in range(0, len(x), batch)]
    rng = None if seed is None else np.random.default_rng(seed)
    count = [0]

    def call():
        i = count[0] % len(batches)
        count[0] += 1
        if rng is not None and i == 0:
            labels = rng.integers(0, 10, size=len(y))
            batches[:] = [(xb, backend.to_device(labels[j * batch:j * batch + len(yb)]))
                          for j, (xb, yb) in enumerate(batches)]
        return step(*batches[i])
    return call
