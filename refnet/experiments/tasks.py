"""The tasks the experiments are made of: each takes a plain spec dict and returns
``(arrays, meta)`` (numpy arrays, JSON-able dict), so it can run in any process and be cached.

``train``: build a model, train it with refnet's Trainer, and summarize the per-step record
of every scale-invariant weight (one row per scale group: a unit, or the whole LN tensor):

  trace/step, trace/loss                  block means over ``trace_every`` steps
  <name>/trace/{norm,efflr,angle,G2}      (blocks, 3): 10/50/90% quantiles over groups of the
                                          block mean (angle: block RMS)
  <name>/win/{norm,norm4,efflr,angle,G2}  (groups,): per-group means over the window, the last
                                          ``window`` fraction of the steps (angle: RMS)
  <name>/run/{norm0,normT,G2}             (groups,): the first and last norm, G2 over the run
  <name>/win/dlogx                        (groups,): mean per step of ln(x_{t+1}/x_t) over the window,
                                          x = ||w||^2 (when ``record_drift``)
  <name>/run/dead                         fraction of groups whose gradient is exactly 0 over
                                          the last 5% of steps (dead units: no steady state)
  <name>/resid/angle                      max over steps and groups of the relative error of the
                                          one-step identity tan(angle) = lr G~ / ((1-2 lr lam) ||w||^2)
                                          (plain SGD only)
  <name>/resid/norm                       the same for identity 4 (plain SGD, no projection)
  units/<name>/{norm,G2}                  (steps, keep_units): every step of the first units
  test_logits                             (n_test, classes) at the end, when ``keep_logits``
                                          (eval mode; ``"batch"``: batch statistics, batches of 1000;
                                          ``"both"``: eval mode, plus test_logits_batch)
  <name>/autocorr                         (lags+1, groups): gradient correlations over the
                                          window, when ``autocorr_lags`` (``track_autocorr``)
  gamma/<name>                            (features,): |gamma| at the end, for every trained
                                          BN/LN scale (the 1-D ``weight`` of a norm layer)

``optim["exp_lr"] = {"lam": lam}`` trains the scale-invariant weights on Li & Arora's
exponentially growing lr instead of L2 (``exponential_lr``).

with G~ = ||g|| ||w||, the gradient norm at the unit point, G2 = G~^2. meta holds the final test
accuracy and loss, the per-epoch record, and per weight its scale group, group size d and
number of groups.
"""

import time

import numpy as np

import theory
from refnet import backend
from refnet.data import load_dataset
from refnet.nn.models import cnn, mlp, trainable_parameters
from refnet.nn.norm import LayerNorm, _BatchNorm
from refnet.optim import SGD, Adam
from refnet.train import Trainer

_DATA = {}  # per process: the data sets already loaded, by their spec


def load_data(spec):
    """The Dataset of a data spec ``{"name", "data_dir", "subset", "test_subset", "seed",
    "synthetic": {...}}``, loaded once per process."""
    key = repr(sorted((k, repr(v)) for k, v in spec.items()))
    if key not in _DATA:
        extra = dict(spec.get("synthetic") or {}) if spec["name"] == "synthetic" else {}
        _DATA[key] = load_dataset(spec["name"], data_dir=spec.get("data_dir"),
                                  subset=spec.get("subset"), test_subset=spec.get("test_subset"),
                                  seed=spec.get("seed", 0), **extra)
    return _DATA[key]


def build_model(spec, data):
    """An mlp or cnn from a model spec; ``eps`` (if given) replaces every BN/LN eps and
    ``w0_scale`` multiplies every scale-invariant weight (the function does not change)."""
    dtype = np.dtype(spec.get("dtype", "float32"))
    common = dict(num_classes=data.num_classes, norm=spec.get("norm", "bn"), rng=spec.get("seed", 0),
                  dtype=dtype, affine=spec.get("affine", True), train_head=spec.get("train_head", True))
    if spec.get("arch", "mlp") == "mlp":
        model = mlp(int(np.prod(data.input_shape)), width=spec["width"], depth=spec.get("depth"),
                    **common)
    else:
        c, size = data.input_shape[0], data.input_shape[-1]
        model = cnn(c, image_size=size, widths=tuple(spec["widths"]), **common)
    if spec.get("eps") is not None:
        for m in model.modules():
            if isinstance(m, (_BatchNorm, LayerNorm)):
                m.eps = float(spec["eps"])
    scale = spec.get("w0_scale", 1.0)
    if scale != 1.0:
        for p in model.parameters():
            if p.scale_group is not None:
                p.data *= scale
    return model


def build_optimizer(spec, model):
    """SGD or Adam from an optim spec. ``l2_scope="invariant"`` applies ``l2``/``weight_decay``
    to the scale-invariant weights only (the head and gamma/beta are then not regularized)."""
    params = trainable_parameters(model)
    reg = {"l2": spec.get("l2", 0.0), "weight_decay": spec.get("weight_decay", 0.0)}
    if spec.get("l2_scope", "all") == "invariant":
        inv = [p for p in params if p.scale_group is not None]
        rest = [p for p in params if p.scale_group is None]
        groups = [{"params": inv, **reg}] + ([{"params": rest, "l2": 0.0, "weight_decay": 0.0}]
                                            if rest else [])
    else:
        groups = [{"params": params, **reg}]
    common = {"lr": spec["lr"], "unit_norm": spec.get("unit_norm", False)}
    if spec["name"] == "sgd":
        opt = SGD(groups, momentum=spec.get("momentum", 0.0), **common)
    elif spec["name"] == "adam":
        opt = Adam(groups, betas=tuple(spec.get("betas", (0.9, 0.999))), eps=spec.get("eps", 1e-8),
                   **common)
    else:
        raise ValueError(f"build_optimizer(spec['name']): got {spec['name']!r}, expected 'sgd' or 'adam'")
    if common["unit_norm"]:
        opt.project()  # start on the sphere, so every step sees ||w|| = 1
    return opt


def _blocks(a, b):
    n = (len(a) // b) * b
    return a[:n].reshape((n // b, b) + a.shape[1:])


def _q(a):
    return np.quantile(a, [0.1, 0.5, 0.9], axis=-1).T


def summarize(history, spec, model, optimizer):
    """The arrays described in the module docstring, from a Trainer's History."""
    s = history.steps
    named = dict(model.named_parameters())
    o = spec["optim"]
    total, b = len(s["step"]), spec.get("trace_every", 10)
    start = int(round(total * (1 - spec.get("window", 0.5))))
    plain_sgd = (o["name"] == "sgd" and o.get("momentum", 0.0) == 0 and o.get("weight_decay", 0.0) == 0
                 and not o.get("exp_lr"))
    out = {"trace/step": _blocks(s["step"], b)[:, 0].astype(np.int64),
           "trace/loss": _blocks(s["loss"], b).mean(axis=1)}
    for name, info in history.params.items():
        n, eff, ang, gn = (s[f"{k}/{name}"].astype(np.float64)
                           for k in ("norm", "effective_lr", "angle", "grad_norm_unit"))
        g2 = gn * gn
        for key, a, rms in (("norm", n, False), ("efflr", eff, False), ("angle", ang, True), ("G2", g2, False)):
            blk = _blocks(a * a if rms else a, b).mean(axis=1)
            out[f"{name}/trace/{key}"] = _q(np.sqrt(blk) if rms else blk)
        w = slice(start, None)
        out.update({f"{name}/win/norm": n[w].mean(0), f"{name}/win/norm4": (n[w] ** 4).mean(0),
                    f"{name}/win/efflr": eff[w].mean(0), f"{name}/win/angle": np.sqrt((ang[w] ** 2).mean(0)),
                    f"{name}/win/G2": g2[w].mean(0)})
        if spec.get("record_drift") and total - start > 1:  # mean per step of ln(x_{t+1}/x_t) over the window
            out[f"{name}/win/dlogx"] = 2 * (np.log(n[-1]) - np.log(n[start])) / (total - 1 - start)
        tail = g2[-max(1, total // 20):]
        out.update({f"{name}/run/norm0": n[0], f"{name}/run/normT": n[-1],
                    f"{name}/run/G2": g2[:-1].mean(0), f"{name}/run/dead": np.mean(np.all(tail == 0, axis=0))})
        if plain_sgd:
            lam = _l2_of(optimizer, named[name])
            x = n * n
            # one SGD step turns w by tan(angle) = lr ||g|| / ((1 - 2 lr lam) ||w||)
            pred = theory.effective_lr(o["lr"], n) * gn / (1 - 2 * o["lr"] * lam)
            out[f"{name}/resid/angle"] = np.max(np.abs(np.tan(ang) - pred) / pred)
            if not o.get("unit_norm", False):
                nxt = theory.sgd_norm_recursion(x[:-1], o["lr"], lam, g2[:-1] / x[:-1])
                out[f"{name}/resid/norm"] = np.max(np.abs(x[1:] - nxt) / x[1:])
        k = spec.get("keep_units", 0)
        if k:
            out[f"units/{name}/norm"], out[f"units/{name}/G2"] = n[:, :k], g2[:, :k]
    return out


def _l2_of(optimizer, param):
    """The coupled L2 coefficient ``optimizer`` applies to ``param``."""
    for g in optimizer.param_groups:
        if any(p is param for p in g["params"]):
            return g["l2"] if param.decay else 0.0
    return 0.0


def track_autocorr(opt, model, lags, start, every=5):
    """Wrap ``opt.step`` to accumulate, from step ``start`` on, the lag-m products
    ``<g~_t, g~_{t-m}>`` (m = 0..lags) per unit of every "unit" weight, anchored every
    ``every`` steps; ``finish()`` returns ``{name: (lags+1, units)}`` correlations
    ``E<g~_t, g~_{t-m}> / E||g~_t||^2`` (row 0 is 1)."""
    tracked = [(n, p) for n, p in model.named_parameters() if p.scale_group == "unit"]
    hist = {n: [] for n, _ in tracked}
    dots = {n: np.zeros((lags + 1, p.shape[0])) for n, p in tracked}
    count, t, inner = np.zeros(lags + 1), [0], opt.step

    def step():
        if t[0] >= start:
            for n, p in tracked:
                w, g = (backend.asnumpy(a).reshape(p.shape[0], -1) for a in (p.data, p.grad))
                gt = g * np.sqrt((w * w).sum(axis=1, keepdims=True))
                hist[n].insert(0, gt)
                del hist[n][lags + 1:]
                if (t[0] - start) % every == 0:
                    for m, old in enumerate(hist[n]):
                        dots[n][m] += (gt * old).sum(axis=1)
            if (t[0] - start) % every == 0:
                count[:len(hist[tracked[0][0]])] += 1
        t[0] += 1
        inner()

    opt.step = step
    return lambda: {n: (d / np.maximum(count, 1)[:, None]) / (d[0] / count[0]) for n, d in dots.items()}


def exponential_lr(opt, spec):
    """Li & Arora's schedule on the scale-invariant weights (``spec["exp_lr"] = {"lam": lam}``,
    with ``l2_scope="invariant"`` so that they are group 0 and no L2 reaches them): before step
    ``t`` their lr is ``theory.exponential_lr_momentum(lr, lam, t, momentum)``, and with
    momentum their buffers start at ``theory.exponential_lr_initial_buffer(...) * w_0``
    (README section 21), so the run equals SGD + L2 ``lam`` on them to rounding (BN eps = 0)."""
    lr, lam, mu = spec["lr"], spec["exp_lr"]["lam"], spec.get("momentum", 0.0)
    if spec.get("l2_scope") != "invariant" or spec.get("l2", 0.0) or spec.get("name") != "sgd":
        raise ValueError(f"exponential_lr(spec): got {spec!r}; expected plain SGD with l2 = 0 and "
                         f"l2_scope = 'invariant' (the schedule replaces L2 on the scale-invariant weights)")
    group, k, t, inner = opt.param_groups[0], theory.exponential_lr_initial_buffer(lr, lam, mu), [0], opt.step
    if mu and spec["exp_lr"].get("buffer", True):  # buffer False: from zero buffers, to show they break it
        for p in group["params"]:
            opt.state.setdefault(p, {})["momentum_buffer"] = p.data * k

    def step():
        group["lr"] = float(theory.exponential_lr_momentum(lr, lam, t[0], mu))
        t[0] += 1
        inner()

    opt.step = step


def train_task(spec):
    """Train one model (see the module docstring for what comes back)."""
    backend.use(spec.get("device", "cpu"))
    data = load_data(spec["data"])
    model = build_model(spec["model"], data)
    opt = build_optimizer(spec["optim"], model)
    if spec["optim"].get("exp_lr"):
        exponential_lr(opt, spec["optim"])
    lags = spec.get("autocorr_lags", 0)
    if lags:
        start = int(round(spec["steps"] * (1 - spec.get("window", 0.5))))
        finish = track_autocorr(opt, model, lags, start)
    t0 = time.perf_counter()
    trainer = Trainer(model, opt, data, batch_size=spec.get("batch_size", 128), steps=spec["steps"],
                      seed=spec.get("seed", 0), log_every=1, progress=False)
    history = trainer.fit()
    arrays = summarize(history, spec, model, opt)
    if lags:
        arrays.update({f"{n}/autocorr": c for n, c in finish().items()})
    for name, p in model.named_parameters():
        if name.endswith(".weight") and p.data.ndim == 1 and p.scale_group is None:
            arrays[f"gamma/{name}"] = np.abs(backend.asnumpy(p.data)).astype(np.float64)
    if spec.get("keep_logits"):
        # "batch": batch statistics (BN's running averages mix steps taken at different scales,
        # which breaks the exponential-lr identity in eval mode); otherwise eval mode
        xs = [backend.to_device(np.asarray(data.x_test[i:i + 1000], dtype=model.parameters()[0].dtype))
              for i in range(0, len(data.x_test), 1000)]
        model.train() if spec["keep_logits"] == "batch" else model.eval()
        arrays["test_logits"] = np.concatenate([backend.asnumpy(model(x)) for x in xs])
        if spec["keep_logits"] == "both":  # then batch statistics, as test_logits_batch (after: it moves
            model.train()                  # BN's running averages, which eval mode reads)
            arrays["test_logits_batch"] = np.concatenate([backend.asnumpy(model(x)) for x in xs])
    params = {n: {"scale_group": i["scale_group"], "n_groups": i["n_groups"],
                  "d": int(np.prod(i["shape"][1:])) if i["scale_group"] == "unit" else int(np.prod(i["shape"]))}
              for n, i in history.params.items()}
    meta = {"final": history.final, "test_accuracy": history["test_accuracy"],
            "train_loss": history["train_loss"], "params": params, "n_test": len(data.y_test),
            "seconds": time.perf_counter() - t0}
    return arrays, meta
