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
  test_logits, test_labels                (n_test, classes) at the end and the labels, when
                                          ``keep_logits`` (paired tests over the same images;
                                          eval mode; ``"batch"``: batch statistics, batches of 1000;
                                          ``"both"``: eval mode, plus test_logits_batch)
  <name>/autocorr                         (lags+1, groups): gradient correlations over the
                                          window, when ``autocorr_lags`` (``track_autocorr``)
  gamma/<name>                            (features,): |gamma| at the end, for every trained
                                          BN/LN scale (the 1-D ``weight`` of a norm layer)
  <name>/steps/<i>/{corr,sq}              (groups,): over the i-th window ``[start, stop)`` of
                                          ``step_corr`` (a list of them),
                                          the sums of ``<v_t, z_t>`` and ``||v_t||^2`` per group,
                                          ``v_t = p w_t - w_{t+1}`` (the move without the decay,
                                          ``p = 1 - lr wd``), ``z_t = sum_{k>=1} p^k v_{t-k}``
                                          (``track_step_correlation``)

``rescale = {"at": T, "factor": c}`` rescales the scale-invariant weights (and the optimizer's
state with them) at step ``T`` (``rescale_at``); ``{"at": T, "factors": [...]}`` trains the first
``T`` steps once and branches there, one rescaled run per factor (``rescale_branches``: the arrays
above under ``branch<i>/``).

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
from refnet.optim import SGD, Adam, Hyperball, Lion, Muon, Rotational
from refnet.optim.wrapper import Wrapper
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
    """SGD, Adam, Lion or Muon from an optim spec, in a wrapper if ``spec["wrapper"]`` is
    ``{"name": "rotational", "eta_r": ...}`` or ``{"name": "hyperball"}``. ``l2_scope="invariant"``
    applies ``l2``/``weight_decay`` to the scale-invariant weights only (the head and gamma/beta
    are then not regularized); ``rest_lr`` (Muon) sets the lr of the other parameters."""
    params = trainable_parameters(model)
    reg = {"l2": spec.get("l2", 0.0), "weight_decay": spec.get("weight_decay", 0.0)}
    if spec.get("l2_scope", "all") == "invariant":
        inv = [p for p in params if p.scale_group is not None]
        rest = [p for p in params if p.scale_group is None]
        free = {"l2": 0.0, "weight_decay": 0.0} if spec["name"] in ("sgd", "adam") else {"weight_decay": 0.0}
        if spec.get("rest_lr") is not None:
            free["lr"] = spec["rest_lr"]
        if spec["name"] in ("sgd", "adam"):
            groups = [{"params": inv, **reg}]
        else:
            groups = [{"params": inv, "weight_decay": reg["weight_decay"]}]
        groups += [{"params": rest, **free}] if rest else []
    else:
        groups = [{"params": params, **(reg if spec["name"] in ("sgd", "adam") else
                                        {"weight_decay": reg["weight_decay"]})}]
    common = {"lr": spec["lr"], "unit_norm": spec.get("unit_norm", False)}
    if spec["name"] == "sgd":
        opt = SGD(groups, momentum=spec.get("momentum", 0.0), **common)
    elif spec["name"] == "adam":
        opt = Adam(groups, betas=tuple(spec.get("betas", (0.9, 0.999))), eps=spec.get("eps", 1e-8),
                   **common)
    elif spec["name"] == "lion":
        opt = Lion(groups, lr=spec["lr"], betas=tuple(spec.get("betas", (0.9, 0.99))))
    elif spec["name"] == "muon":
        opt = Muon(groups, lr=spec["lr"], momentum=spec.get("momentum", 0.95),
                   nesterov=spec.get("nesterov", True))
    else:
        raise ValueError(f"build_optimizer(spec['name']): got {spec['name']!r}, expected 'sgd', 'adam', "
                         f"'lion' or 'muon'")
    if common["unit_norm"]:
        opt.project()  # start on the sphere, so every step sees ||w|| = 1
    wrapper = spec.get("wrapper")
    if wrapper:
        if wrapper["name"] == "rotational":
            opt = Rotational(opt, eta_r=wrapper.get("eta_r"),
                             update_norm_decay=wrapper.get("update_norm_decay", 0.9))
        elif wrapper["name"] == "hyperball":
            opt = Hyperball(opt)
        else:
            raise ValueError(f"build_optimizer(spec['wrapper']['name']): got {wrapper['name']!r}, "
                             f"expected 'rotational' or 'hyperball'")
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


def track_step_correlation(opt, model, windows):
    """Wrap ``opt.step`` to sum, over the steps ``start <= t < stop`` of each window, per scale
    group of every scale-invariant weight, ``<v_t, z_t>`` and ``||v_t||^2``: ``v_t = p w_t - w_{t+1}``
    is the step without the decoupled decay (``p = 1 - lr wd``, 1 without decay), ``z_t =
    sum_{k>=1} p^k v_{t-k}`` its discounted past, kept from step 0. Then ``R = 1 + 2 corr/sq`` is
    the correlation sum ``1 + 2 sum_k p^k r_k`` of theory/README.md (16.2) and (17.1), measured.
    ``finish()`` returns ``{name: [(corr, sq) per window]}``, each ``(groups,)``."""
    tracked = [(n, p) for n, p in model.named_parameters() if p.scale_group is not None]
    group_of = {id(q): g for g in opt.param_groups for q in g["params"]}
    decoupled = not isinstance(opt, Wrapper)  # a wrapper switches its inner's decay off
    z = {n: None for n, _ in tracked}
    sums = {n: [[0.0, 0.0] for _ in windows] for n, _ in tracked}
    t, inner = [0], opt.step

    def rows(a, p):
        a = backend.asnumpy(a).astype(np.float64)
        return a.reshape(a.shape[0], -1) if p.scale_group == "unit" else a.reshape(1, -1)

    def step():
        before = {n: rows(p.data, p) for n, p in tracked}
        inner()
        for n, p in tracked:
            g = group_of[id(p)]
            keep = 1.0 - g["lr"] * g.get("weight_decay", 0.0) if p.decay and decoupled else 1.0
            v = keep * before[n] - rows(p.data, p)
            if z[n] is None:
                z[n] = np.zeros_like(v)
            for (start, stop), acc in zip(windows, sums[n]):
                if start <= t[0] < stop:
                    acc[0] = acc[0] + (v * z[n]).sum(axis=1)
                    acc[1] = acc[1] + (v * v).sum(axis=1)
            z[n] = keep * (z[n] + v)
        t[0] += 1

    opt.step = step
    return lambda: {n: [(np.asarray(c, dtype=float), np.asarray(q, dtype=float)) for c, q in w]
                    for n, w in sums.items()}


def exponential_lr(opt, spec):
    """Li & Arora's schedule on the scale-invariant weights (``spec["exp_lr"] = {"lam": lam}``,
    with ``l2_scope="invariant"`` so that they are group 0 and no L2 reaches them): before step
    ``t`` their lr is ``theory.exponential_lr_momentum(lr, lam, t, momentum)``, and with
    momentum their buffers start at ``theory.exponential_lr_initial_buffer(...) * w_0``
    (README section 24), so the run equals SGD + L2 ``lam`` on them to rounding (BN eps = 0)."""
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


def rescale_at(opt, model, spec):
    """``spec["rescale"] = {"at": T, "factor": c}``: at the start of optimizer step ``T`` (0-based,
    after that step's record), multiply every scale-invariant weight by ``c`` and carry the
    optimizer's state along the same symmetry, so the run continues from the rescaled network as
    if it had always been there: the gradient (already computed) by ``1/c``, Adam's ``exp_avg`` by
    ``1/c`` and ``exp_avg_sq`` by ``1/c^2`` (they hold gradients only: AdamW or no decay). The
    function does not change. A heavy-ball buffer mixes the L2 term, which scales as ``c``, with
    gradients, which scale as ``1/c``: per scale group its part along ``w`` (the L2 term's
    direction) is multiplied by ``c`` and the rest by ``1/c`` (approximate: the L2 term's small
    tangential part and past gradients' small radial part go the wrong way; a transient of about
    ``1/(1 - momentum)`` steps). SGD (no Nesterov) or Adam without coupled L2."""
    o, at, c = spec["optim"], int(spec["rescale"]["at"]), float(spec["rescale"]["factor"])
    if not (o["name"] == "sgd" and not o.get("nesterov")) and not (o["name"] == "adam" and not o.get("l2")):
        raise ValueError(f"rescale_at(spec['optim']): got {o!r}; expected SGD without Nesterov or Adam without "
                         "coupled L2")
    if not c > 0 or at < 0:
        raise ValueError(f"rescale_at(spec['rescale']): got {spec['rescale']!r}; expected factor > 0, at >= 0")
    params, t, inner = [p for p in model.parameters() if p.scale_group is not None], [0], opt.step

    def step():
        if t[0] == at:
            for p in params:
                p.data *= c
                p.grad /= c
                st = opt.state.get(p, {})
                if "exp_avg" in st:
                    st["exp_avg"] /= c
                    st["exp_avg_sq"] /= c * c
                if st.get("momentum_buffer") is not None:  # p.data already rescaled: radial part x c, rest / c
                    b, w = st["momentum_buffer"], p.data
                    axes = tuple(range(1, w.ndim)) if p.scale_group == "unit" else tuple(range(w.ndim))
                    radial = w * ((b * w).sum(axis=axes, keepdims=True) / (w * w).sum(axis=axes, keepdims=True))
                    b[...] = c * radial + (b - radial) / c
        t[0] += 1
        inner()

    opt.step = step


def rescale_branches(spec):
    """``spec["rescale"] = {"at": T, "factors": [c1, c2, ...]}``: train ``T`` steps once, then, from
    that state (checkpointed: the model, BN's running averages, the optimizer, the batch order), one
    branch per factor to ``spec["steps"]``, rescaled at step ``T`` as by ``rescale_at``. Each branch
    is the run ``{"at": T, "factor": c}`` would give, bit for bit, without training the shared first
    ``T`` steps again. Returns the branches' arrays under ``branch<i>/`` and the last branch's meta."""
    import copy
    import tempfile
    T, factors = int(spec["rescale"]["at"]), [float(c) for c in spec["rescale"]["factors"]]
    if not 0 <= T <= spec["steps"] or not factors:
        raise ValueError(f"rescale_branches(spec['rescale']): got {spec['rescale']!r}; expected 0 <= at <= steps "
                         f"({spec['steps']}) and a non-empty list of factors")
    backend.use(spec.get("device", "cpu"))
    data = load_data(spec["data"])
    t0 = time.perf_counter()

    def trainer(steps):
        model = build_model(spec["model"], data)
        opt = build_optimizer(spec["optim"], model)
        return model, opt, Trainer(model, opt, data, batch_size=spec.get("batch_size", 128), steps=steps,
                                   seed=spec.get("seed", 0), log_every=1, progress=False)

    arrays, meta = {}, None
    with tempfile.TemporaryDirectory() as tmp:
        _, _, first = trainer(T)
        first.fit()
        path = first.save_checkpoint(f"{tmp}/at.npz")
        for i, c in enumerate(factors):
            model, opt, tr = trainer(spec["steps"])
            tr.load_checkpoint(path)
            branch = copy.deepcopy(spec)
            branch["rescale"] = {"at": 0, "factor": c}  # rescale_at counts the steps it sees, from T here
            rescale_at(opt, model, branch)
            history = tr.fit()
            arrays.update({f"branch{i}/{k}": v for k, v in summarize(history, spec, model, opt).items()})
            params = {n: {"scale_group": v["scale_group"], "n_groups": v["n_groups"],
                          "d": int(np.prod(v["shape"][1:])) if v["scale_group"] == "unit" else int(np.prod(v["shape"]))}
                      for n, v in history.params.items()}
            meta = {"final": history.final, "params": params, "factors": factors,
                    "seconds": time.perf_counter() - t0}
    return arrays, meta


def train_task(spec):
    """Train one model (see the module docstring for what comes back)."""
    if "factors" in (spec.get("rescale") or {}):
        return rescale_branches(spec)
    backend.use(spec.get("device", "cpu"))
    data = load_data(spec["data"])
    model = build_model(spec["model"], data)
    solved = None
    for key, out in (("weight_decay", "wd"), ("l2", "l2")):  # a decay solved for a target angle, here (a
        if isinstance(spec["optim"].get(key), dict):          # Monte Carlo, a pilot run): cached with the run
            from refnet.experiments import optimizer_angles
            solved = optimizer_angles.solve_decay(spec["optim"][key], spec)
            spec = {**spec, "optim": {**spec["optim"], key: solved[out]}}
    opt = build_optimizer(spec["optim"], model)
    if spec["optim"].get("exp_lr"):
        exponential_lr(opt, spec["optim"])
    if spec.get("rescale"):
        rescale_at(opt, model, spec)
    lags = spec.get("autocorr_lags", 0)
    if lags:
        start = int(round(spec["steps"] * (1 - spec.get("window", 0.5))))
        finish = track_autocorr(opt, model, lags, start)
    if spec.get("step_corr"):
        finish_corr = track_step_correlation(opt, model, spec["step_corr"])
    t0 = time.perf_counter()
    trainer = Trainer(model, opt, data, batch_size=spec.get("batch_size", 128), steps=spec["steps"],
                      seed=spec.get("seed", 0), log_every=1, progress=False)
    history = trainer.fit()
    arrays = summarize(history, spec, model, opt)
    if lags:
        arrays.update({f"{n}/autocorr": c for n, c in finish().items()})
    if spec.get("step_corr"):
        for n, per_window in finish_corr().items():
            for i, (c, q) in enumerate(per_window):
                arrays[f"{n}/steps/{i}/corr"], arrays[f"{n}/steps/{i}/sq"] = c, q
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
        arrays["test_labels"] = np.asarray(data.y_test, dtype=np.int64)
        if spec["keep_logits"] == "both":  # then batch statistics, as test_logits_batch (after: it moves
            model.train()                  # BN's running averages, which eval mode reads)
            arrays["test_logits_batch"] = np.concatenate([backend.asnumpy(model(x)) for x in xs])
    params = {n: {"scale_group": i["scale_group"], "n_groups": i["n_groups"],
                  "d": int(np.prod(i["shape"][1:])) if i["scale_group"] == "unit" else int(np.prod(i["shape"]))}
              for n, i in history.params.items()}
    meta = {"final": history.final, "test_accuracy": history["test_accuracy"],
            "train_loss": history["train_loss"], "params": params, "n_test": len(data.y_test),
            "seconds": time.perf_counter() - t0 + (solved or {}).get("seconds", 0.0)}  # a pilot's own time
    if solved is not None:
        meta["solved_decay"] = solved
    return arrays, meta

