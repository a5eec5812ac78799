"""PyTorch's side of ``refnet bench``, and the memory a forward keeps for the backward.

PyTorch is never a dependency: ``TorchSide.create`` returns None when it cannot be
imported (or, for ``--device gpu``, has no CUDA). It is imported only here, lazily, after
``OMP_WAIT_POLICY=PASSIVE`` is set: PyTorch's OpenMP threads otherwise spin-wait after
each op and steal the two cores from NumPy's BLAS threads in the same process.

Activation memory is counted the same way on both sides: the distinct buffers that a
training-mode forward leaves referenced for the backward, minus the parameters.
refnet: the arrays in every module's ``_cache`` (a view counts as the whole buffer it
views, each buffer once). PyTorch: the tensors autograd saves, seen through
``torch.autograd.graph.saved_tensors_hooks``, each storage once.
"""

import os

import numpy as np

from refnet import backend
from refnet.nn.models import cnn


def _root(a):
    """The array owning the memory that ``a`` views."""
    while getattr(a, "base", None) is not None and hasattr(a.base, "nbytes"):
        a = a.base
    return a


def _arrays(obj):
    if hasattr(obj, "nbytes") and hasattr(obj, "dtype"):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            yield from _arrays(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _arrays(o)


def cached_bytes(model, x):
    """Bytes of the distinct non-parameter buffers in the modules' caches after ``model(x)``."""
    model.train()
    model(x)
    params = {id(_root(p.data)) for p in model.parameters()}
    seen = {}
    for m in model.modules():
        for a in _arrays(getattr(m, "_cache", None)):
            r = _root(a)
            if id(r) not in params:
                seen[id(r)] = r.nbytes
    return sum(seen.values())


def activation_report(nets, batch, torch_side=None):
    """Bytes cached for the backward by one training-mode forward of each BN CNN in
    ``nets`` ((name, in_channels, image_size, widths) rows), refnet and PyTorch."""
    rng = np.random.default_rng(0)
    out = []
    for name, c, size, widths in nets:
        model = cnn(c, image_size=size, widths=widths, norm="bn", rng=0)
        x = backend.to_device(rng.standard_normal((batch, c, size, size)).astype(np.float32))
        ours = cached_bytes(model, x)
        theirs = torch_side.saved_bytes(model, x) if torch_side else None
        out.append({"name": name.replace("step ", ""), "refnet_mb": ours / 2 ** 20,
                    "torch_mb": None if theirs is None else theirs / 2 ** 20,
                    "ratio": None if not theirs else ours / theirs})
    return out


class TorchSide:
    """PyTorch twins of the bench cases, on ``device`` ("cpu" or "cuda")."""

    def __init__(self, torch, device):
        self.torch, self.device = torch, device
        self.F = torch.nn.functional

    @classmethod
    def create(cls, device="cpu"):
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        try:
            import torch
        except ImportError:
            return None
        if device == "gpu":
            if not torch.cuda.is_available():
                return None
            return cls(torch, "cuda")
        return cls(torch, "cpu")

    def describe(self):
        t = self.torch
        return f"PyTorch {t.__version__} on {self.device}, {t.get_num_threads()} threads"

    def threads(self):
        """PyTorch's CPU thread count (None on a GPU, where it does not set the pace)."""
        return self.torch.get_num_threads() if self.device == "cpu" else None

    def sync(self):
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def tensor(self, a, grad=False):
        t = self.torch.from_numpy(np.ascontiguousarray(backend.asnumpy(a))).to(self.device)
        return t.requires_grad_(grad)

    def op(self, name, arrays, dy, **kwargs):
        """A callable doing forward+backward of ``torch.nn.functional.<name>``."""
        F = self.F
        ts = [self.tensor(a, grad=True) for a in arrays]
        dyt = self.tensor(dy)
        fns = {"conv2d": lambda x, w, b: F.conv2d(x, w, b, **kwargs),
               "batch_norm": lambda x, g, b: F.batch_norm(x, None, None, g, b, training=True),
               "layer_norm": lambda x, g, b: F.layer_norm(x, tuple(x.shape[1:]), g, b),
               "max_pool2d": lambda x: F.max_pool2d(x, **kwargs),
               "linear": lambda x, w, b: F.linear(x, w, b)}
        fn = fns[name]

        def call():
            for t in ts:
                t.grad = None
            fn(*ts).backward(dyt)
        return call

    def twin(self, model):
        """A ``torch.nn.Sequential`` computing what the refnet Sequential ``model`` does,
        with the same parameter values and names."""
        nn = self.torch.nn
        layers = []
        for m in model:
            kind = type(m).__name__
            if kind == "Conv2d":
                t = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                              bias=m.bias is not None)
            elif kind in ("BatchNorm1d", "BatchNorm2d"):
                t = getattr(nn, kind)(m.num_features, m.eps, m.momentum, m.affine)
            elif kind == "Linear":
                t = nn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
            elif kind == "MaxPool2d":
                t = nn.MaxPool2d(m.kernel_size, m.stride)
            elif kind in ("ReLU", "Flatten"):
                t = getattr(nn, kind)()
            else:
                raise NotImplementedError(f"TorchSide.twin: no PyTorch twin for {kind}")
            layers.append(t)
        net = nn.Sequential(*layers).to(self.device)
        with self.torch.no_grad():
            for name, p in net.named_parameters():
                p.copy_(self.tensor(dict(model.named_parameters())[name].data))
        return net

    def step(self, model, x, y, lr=0.01, momentum=0.9, l2=5e-4):
        """A callable doing one SGD step of ``model``'s twin; refnet's ``l2`` is PyTorch's
        ``weight_decay = 2 * l2``, applied to the same (``decay``) parameters."""
        torch, net = self.torch, self.twin(model)
        decay = {name for name, p in model.named_parameters() if p.decay}
        groups = [{"params": [p for n, p in net.named_parameters() if n in decay],
                   "weight_decay": 2 * l2},
                  {"params": [p for n, p in net.named_parameters() if n not in decay]}]
        opt = torch.optim.SGD(groups, lr=lr, momentum=momentum)
        xt, yt = self.tensor(x), self.tensor(y)

        def call():
            opt.zero_grad(set_to_none=True)
            logits = net(xt)
            loss = self.F.cross_entropy(logits, yt)
            loss.backward()
            opt.step()
            return loss.item(), int((logits.argmax(dim=1) == yt).sum())
        return call

    def hvp(self, model, x, y, v):
        """A callable computing H v of the mean cross-entropy of ``model``'s twin with
        ``torch.func``: ``jvp`` of ``grad`` (forward over reverse). BatchNorm normalizes with
        batch statistics and keeps no running ones (``replace_all_batch_norm_modules_``: a
        transformed function may not update them in place), as refnet's training-mode hvp."""
        from torch.func import functional_call, grad, jvp, replace_all_batch_norm_modules_
        net = replace_all_batch_norm_modules_(self.twin(model))
        params = {n: p.detach() for n, p in net.named_parameters()}
        tangents = {n: self.tensor(v[n]) for n in params}
        xt, yt = self.tensor(x), self.tensor(y)

        def loss(p):
            return self.F.cross_entropy(functional_call(net, p, (xt,)), yt)

        def call():
            return jvp(grad(loss), (params,), (tangents,))[1]
        return call

    def saved_bytes(self, model, x):
        """Bytes of the distinct non-parameter storages autograd saves in a forward of the twin."""
        torch, net = self.torch, self.twin(model)
        net.train()
        params = {p.untyped_storage().data_ptr() for p in net.parameters()}
        seen = {}

        def pack(t):
            s = t.untyped_storage()
            if s.data_ptr() not in params:
                seen[s.data_ptr()] = s.nbytes()
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = net(self.tensor(x))
        del out
        return sum(seen.values())
