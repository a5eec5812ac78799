"""Measured versus predicted dynamics of scale-invariant weights (THEORY.md's equilibria).

    history = Trainer(model, SGD(params, lr=0.1, l2=5e-3), data, steps=3000, log_every=1).fit()
    report = compare(history)              # or compare(recorder), see Recorder
    report["params"]["1.weight"]["median"]["rel_error"]   # {"norm_power": ..., "angle": ...}

Per scale group (a unit for BN/WN, the tensor for LN), over a late window of logged steps,
``compare`` measures the mean ``||w||^p``, the RMS angular update and the mean effective lr and
predicts them with ``theory``'s closed form for the optimizer used (read from the History's
config or the optimizer): SGD + L2 (``||w||^4 = lr G2/(4 lam (1-lr lam))``, ``cos angle =
1 - 2 lr lam``), SGD + momentum + L2, Adam + L2 (p = 3), AdamW (p = 2), projected SGD / Adam
(``unit_norm``); without L2 the growth laws, where the measured quantity is the slope per step
of ``||w||^p`` (SGD: p = 4, ``2 lr^2 G2``; Adam: p = 2, with the b2 lag). Convention A: ``l2=lam``
is loss + ``lam ||w||^2``; plain SGD's decoupled ``weight_decay`` equals ``l2 = wd/2``.

``G2 = E||g_tilde||^2`` is the squared gradient norm at the unit point (the recorded
``grad_norm_unit = ||w|| ||g||``, g without L2). The laws are quasi-static: the norm follows G2
through the relaxation -- for SGD + L2 exactly ``||w_{t+1}||^4 = q^4 ||w_t||^4 + 2 q^2 lr^2
||g_tilde_t||^2 + O(lr^4)``, ``q = 1 - 2 lr lam``: an exponential moving average of
``||g_tilde||^2`` at the relaxation rate. So ``g2="relaxed"`` (default) takes that average over
the whole record, then its mean over the window, and for SGD scales the predicted ``tan(angle)``
(``~ ||g_tilde_t||/||w_t||^2``) by ``sqrt(mean(||g_tilde_t||^2/average_t))``: no lag error while
G2 drifts. ``g2="window"``: the plain window mean (THEORY.md's). Either way the window must
start a few relaxation times after the start. ``window``: a fraction (0.5: the second half of
the logged rows) or a number of last rows. Assumes a constant lr over the window (the mean is
used) and L2 / decay applying to the scale-invariant weights, as in refnet's models.
"""

import numpy as np

import theory
from refnet import backend
from refnet.invariance import _rows, angular_update, group_sq_norms, row_dots
from refnet.optim import SGD

QUANTITIES = ("norm_power", "angle", "effective_lr")
_OPTIONS = ("lr", "momentum", "dampening", "nesterov", "l2", "weight_decay", "unit_norm", "betas", "eps")


def optimizer_setup(kind, group):
    """``{"kind": "sgd"|"adam", option: value}`` from an optimizer's type name and one param group."""
    kind = "adam" if "adam" in str(kind).lower() else "sgd"
    return {"kind": kind, **{k: (tuple(v) if k == "betas" else v) for k, v in group.items() if k in _OPTIONS}}


def law(setup):
    """The law that applies: ``(name, p)``, ``p`` the power of ``||w||`` it is stated in."""
    s, l2, wd, mu = setup, setup.get("l2", 0.0), setup.get("weight_decay", 0.0), setup.get("momentum", 0.0)
    sgd_mu = s["kind"] == "sgd" and mu and not s.get("unit_norm") and (wd or not l2)
    adam_l2 = s["kind"] == "adam" and l2 and (wd or s.get("unit_norm"))
    if s.get("nesterov") or s.get("dampening", 0.0) or sgd_mu or adam_l2:
        raise ValueError(f"law(setup): no closed form for {setup!r} (nesterov, dampening, SGD momentum "
                         f"with weight_decay or without L2, Adam l2 with weight_decay or unit_norm)")
    if s["kind"] == "sgd":
        if s.get("unit_norm"):
            return "projected sgd", 2
        return ("sgd growth" if l2 + wd == 0 else "sgd+momentum+l2" if mu else "sgd+l2"), 4
    if s.get("unit_norm"):
        return "projected adam", 2
    return ("adam+l2", 3) if l2 else ("adamw", 2) if wd else ("adam growth", 2)


def equilibrium(name, setup, G2, d):
    """``theory``'s Equilibrium for law ``name`` at one group's ``G2`` and size ``d``."""
    lr, s = setup["lr"], setup
    lam = s.get("l2", 0.0) + s.get("weight_decay", 0.0) / 2  # plain SGD: wd == 2 * l2
    betas = s.get("betas", (0.9, 0.999))
    if name == "sgd+l2":
        return theory.sgd_l2_equilibrium(lr, lam, G2)
    if name == "sgd+momentum+l2":
        return theory.sgd_momentum_l2_equilibrium(lr, lam, G2, s["momentum"])
    if name == "projected sgd":
        return theory.projected_sgd_equilibrium(lr, lam, G2)
    if name == "adam+l2":
        return theory.adam_l2_equilibrium(lr, s["l2"], G2, d, betas, s.get("eps", 1e-8))
    if name == "adamw":
        return theory.adamw_equilibrium(lr, s["weight_decay"], d, betas)
    if name == "projected adam":  # w <- (1 - lr wd) w - lr u, projected: lr/(1 - lr wd) on the sphere
        return theory.projected_adam_equilibrium(lr / (1 - lr * s.get("weight_decay", 0.0)), d, betas)
    raise ValueError(f"equilibrium(name): got {name!r}, expected an equilibrium law")


def relaxed(a, rate, seed_rows):
    """Moving average over rows of ``a`` at ``rate`` per row, seeded with the first ``seed_rows``."""
    ema = a[:max(1, int(seed_rows))].mean(axis=0)
    out = np.empty_like(a)
    for i, row in enumerate(a):
        ema = ema + rate * (row - ema)
        out[i] = ema
    return out


def _source(source, hyper):
    """(steps, params, setup per name) from a History, a Recorder or a dict of the same three."""
    steps, params = source.steps, source.params
    config = getattr(source, "config", {})
    groups = config.get("param_groups", [])
    setups = [optimizer_setup(config.get("optimizer", ""), g) for g in groups]
    per_name = {}
    for name, info in params.items():
        if hyper is not None:
            per_name[name] = optimizer_setup(hyper.get("kind", config.get("optimizer", "")), hyper)
        elif "group" in info:
            per_name[name] = setups[info["group"]]
        elif setups and all(s == {**setups[0], "lr": s["lr"]} for s in setups):
            per_name[name] = setups[0]  # same options in every group: only lr can differ, read below
        else:
            raise ValueError("compare(source): the param groups differ and the History does not say "
                             "which group each parameter is in; pass hyper={...} (one group's options)")
    return steps, params, per_name


def _window(n, window):
    start = n - int(window) if window >= 1 else int(n * (1 - window))
    if not 0 <= start < n:
        raise ValueError(f"compare(window): got {window!r} for {n} logged rows, expected a fraction "
                         f"in (0, 1] or a row count in [1, {n}]")
    return start


def compare(source, window=0.5, g2="relaxed", hyper=None, names=None):
    """Measured vs predicted norm, RMS angle and effective lr per scale group (module doc).

    source: a ``History``, a ``Recorder``, or anything with ``steps``, ``params``, ``config``
    like theirs. hyper: one param group's options (and ``kind``) if a History's groups differ.
    Returns ``{"params": {name: result}}``, a result holding ``law``, ``p``, ``d``, ``window``
    (first and last step), ``lr``, ``G2`` (per group) and ``measured``, ``predicted``,
    ``rel_error`` (measured/predicted - 1): per-group arrays keyed "norm_power" (mean ``||w||^p``;
    growth laws: its slope per step), "angle" (RMS), "effective_lr" (``theory.effective_lr``,
    momentum included); ``median``: their medians over groups.
    """
    steps, params, setups = _source(source, hyper)
    groups = getattr(source, "config", {}).get("param_groups") or [hyper]
    lr0, out = groups[0]["lr"], {}
    for name in (names or list(params)):
        info, setup = params[name], dict(setups[name])
        norm = np.asarray(steps[f"norm/{name}"], dtype=float)
        n, start = norm.shape[0], _window(norm.shape[0], window)
        step_no = np.asarray(steps["step"], dtype=float) if "step" in steps else np.arange(n, dtype=float)
        every = float(np.median(np.diff(step_no))) if n > 1 else 1.0
        # a Trainer records group 0's lr; a schedule scales every group by the same factor
        lr_rows = steps.get(f"lr/{name}", np.asarray(steps.get("lr", [lr0] * n), float) * setup["lr"] / lr0)
        setup["lr"] = float(np.mean(np.asarray(lr_rows, dtype=float)[start:]))
        lname, p = law(setup)
        d = int(np.prod(info["shape"][1:] if info["scale_group"] == "unit" else info["shape"]))
        gt2 = np.asarray(steps[f"grad_norm_unit/{name}"], dtype=float) ** 2
        G2 = gt2[start:].mean(axis=0)
        w, angle = norm[start:], np.asarray(steps[f"angle/{name}"], dtype=float)[start:]
        mu = setup.get("momentum", 0.0) if setup["kind"] == "sgd" else 0.0
        measured = {"angle": np.sqrt((angle ** 2).mean(axis=0)),
                    "effective_lr": theory.effective_lr(setup["lr"], w, setup["kind"], mu).mean(axis=0)}
        if lname.endswith("growth"):
            predicted = _growth(lname, setup, G2, d, w, step_no, start, norm, measured)
        else:
            lag = 1.0
            if g2 == "relaxed" and not lname.startswith("projected"):
                rate = np.array([equilibrium(lname, setup, G, d).relaxation_rate for G in G2])
                rate = 1 - (1 - np.minimum(rate, 1.0)) ** every
                ema = relaxed(gt2, rate, np.median(1 / rate))[start:]
                G2 = ema.mean(axis=0)
                if setup["kind"] == "sgd":  # tan(angle) ~ ||g_tilde_t||/x_t with x_t^2 ~ ema_t
                    lag = np.sqrt((gt2[start:] / ema).mean(axis=0))
            elif g2 not in ("relaxed", "window"):
                raise ValueError(f"compare(g2): got {g2!r}, expected 'relaxed' or 'window'")
            eqs = [equilibrium(lname, setup, G, d) for G in G2]
            measured["norm_power"] = (w ** p).mean(axis=0)
            predicted = {"norm_power": np.array([e.norm ** p for e in eqs]),
                         "angle": np.arctan(np.tan([e.angle for e in eqs]) * lag),
                         "effective_lr": np.array([e.effective_lr for e in eqs])}
        rel = {k: measured[k] / predicted[k] - 1 for k in QUANTITIES}
        out[name] = {"law": lname, "p": p, "d": d, "scale_group": info["scale_group"],
                     "window": (float(step_no[start]), float(step_no[-1])), "lr": setup["lr"],
                     "g2": g2, "G2": G2, "measured": measured, "predicted": predicted, "rel_error": rel,
                     "median": {key: {k: float(np.median(v[k])) for k in QUANTITIES}
                                for key, v in (("measured", measured), ("predicted", predicted),
                                               ("rel_error", rel))}}
    return {"params": out}


def _growth(lname, setup, G2, d, w, step_no, start, norm, measured):
    """No L2: measured slope of ``||w||^p`` (least squares over the window) vs the growth law;
    the predicted angle and effective lr follow the law's norm, integrated from the window's
    first row. SGD: slope ``2 c + c^2 E[1/||w||^4]``, ``c = lr^2 G2`` (identity 4 at lam = 0).
    Adam: ``theory.adam_growth``'s slope (with the b2 lag) from the first row's RMS norm, which
    assumes the record starts at step 0."""
    lr, t, p = setup["lr"], step_no[start:], 4 if lname == "sgd growth" else 2
    y, tc = w ** p, t - t.mean()
    measured["norm_power"] = (tc[:, None] * (y - y.mean(axis=0))).sum(axis=0) / (tc * tc).sum()
    if lname == "sgd growth":
        c = lr * lr * G2
        slope = 2 * c + c * c * (1 / y).mean(axis=0)
    else:
        norm0 = float(np.sqrt((norm[0] ** 2).mean()))
        g = theory.adam_growth(t.astype(int), lr, d, norm0, setup.get("betas", (0.9, 0.999)))
        slope = np.full(G2.shape, float(g.slope.mean()))
    y_law = y[0] + slope * (t - t[0])[:, None]
    x_law = y_law ** (2.0 / p)
    b1 = setup.get("betas", (0.9,))[0]
    angle = (np.arctan(lr * np.sqrt(G2) / x_law) if lname == "sgd growth"
             else np.sqrt((1 - b1) / (1 + b1) * slope / x_law))
    return {"norm_power": slope, "angle": np.sqrt((angle ** 2).mean(axis=0)),
            "effective_lr": theory.effective_lr(lr, np.sqrt(x_law), setup["kind"]).mean(axis=0)}


def angle_balance(report, a, b):
    """Ratio of the median RMS angles of parameters ``a`` and ``b`` in ``compare``'s report,
    measured and predicted (balance: 1 for SGD and AdamW; ``(d G^-1)^(1/3)`` ratios for Adam + L2)."""
    ra, rb = report["params"][a], report["params"][b]
    return {"measured": ra["median"]["measured"]["angle"] / rb["median"]["measured"]["angle"],
            "predicted": ra["median"]["predicted"]["angle"] / rb["median"]["predicted"]["angle"]}


def gradient_correlation(source, window=0.5, names=None):
    """Why the SGD + momentum norm misses the random-walk law on real data, per scale group.

    Heavy ball: ``b_t = mu b_{t-1} + g_t + 2 lam w_t``, ``w_{t+1} = w_t - lr b_t``; ``x = ||w||^2``,
    ``B = ||b||^2``, ``p_t = <w_t, b_t>``. Exactly, using only ``<w_t, g_t> = 0``:
    ``x_{t+1} = x_t - 2 lr p_t + lr^2 B_t`` and ``p_t = mu p_{t-1} - mu lr B_{t-1} + 2 lam x_t``.
    Their means over a stationary stretch give ``E[p] = lr E[B]/2``, ``(1-mu) E[p] = 2 lam E[x] -
    mu lr E[B]``, hence ``E[x] = lr (1+mu) E[B]/(4 lam)`` whatever the gradients do ("balance";
    over a window of T steps ``(1-mu) (x_end - x_start)/(2 lr T)`` joins ``lr (1+mu) E[B]/2``).
    Next ``E[B] = S E||g||^2/(1-mu^2)`` (up to O(lr lam/(1-mu)^2) from the L2 term), with
    ``S = 1 + 2 sum_m mu^m c_m``, ``c_m = E<g_t, g_{t-m}>/E||g||^2``; as ``||g||^2 = ||g_tilde||^2/x``,
    ``x^2 = S lr G2/(4 lam (1-mu))``: the walk's law times S. The walk has ``c_m = 0``. On real
    data a step changes the next gradients along curved directions: under SGD ``c_1 ~ -0.14``
    (overshoot; irrelevant there, identity 4 has no S), under heavy ball the response rings
    (``c_1, c_2 > 0``, ``c_4..c_12 < 0``, decaying like ``sqrt(mu)^m``), and S ~ 0.87-0.90 on the BN
    MLP: ``||w||^4`` 10-13% under the law. The angle needs only the balance: ``E||w_{t+1} -
    w_t||^2/E[x] = lr^2 E[B]/E[x] = 4 lr lam/(1+mu)``, so the angle law holds regardless of S.

    Returns per name: with a Recorder's ``lags``, ``autocorr`` ((lags, groups): ``c_1..c_K``) and
    ``S`` (``theory.momentum_correlation_factor``); with momentum, ``buffer_ratio`` (S seen
    directly: ``E[B] (1-mu^2)/E||g||^2``) and ``balance`` (``E[x]`` over its prediction, minus 1).
    """
    steps, params, setups = _source(source, None)
    out = {}
    for name in (names or list(params)):
        setup, res = setups[name], {}
        mu = setup.get("momentum", 0.0)
        start = _window(len(steps[f"norm/{name}"]), window)
        if f"grad_dot/{name}" in steps:
            sums = np.asarray(steps[f"grad_dot/{name}"], dtype=float)[start:].sum(axis=0)
            res["autocorr"] = c = sums[1:] / sums[0]
            res["S"] = np.array([theory.momentum_correlation_factor(mu, col) for col in c.T])
        if f"buffer_sq/{name}" in steps:
            B = np.asarray(steps[f"buffer_sq/{name}"], dtype=float)[start:-1].mean(axis=0)
            x = np.asarray(steps[f"norm/{name}"], dtype=float)[start:] ** 2
            g2 = (np.asarray(steps[f"grad_norm_unit/{name}"], dtype=float)[start:-1] ** 2 / x[:-1]).mean(0)
            lr, lam, T = float(np.mean(steps[f"lr/{name}"][start:])), setup["l2"], x.shape[0] - 1
            res["buffer_ratio"] = B * (1 - mu * mu) / g2
            drift = (1 - mu) * (x[-1] - x[0]) / (2 * lr * T)
            res["balance"] = x[:-1].mean(axis=0) / ((lr * (1 + mu) * B / 2 - drift) / (2 * lam)) - 1
        out[name] = res
    return out


def applied_step(optimizer, group):
    """How ``step_angles`` knows the step ``optimizer`` applies to the parameters of ``group``:
    "momentum" (refnet's SGD with momentum: ``w <- w - lr b``, ``b`` the momentum buffer after
    the step), "plain" (SGD without it: ``w <- w - lr (g + 2 l2 w)``), or None (any other
    optimizer or option: Nesterov, decoupled decay, unit_norm, Adam...: the step is measured)."""
    if (type(optimizer) is not SGD or group["nesterov"] or group["weight_decay"] != 0
            or group["unit_norm"]):
        return None
    return "momentum" if group["momentum"] != 0 else "plain"


class StepAngles:
    """The angle each tracked parameter turns by in one optimizer step, per scale group, for a
    Trainer's or Recorder's per-step record: ``before`` (just before ``optimizer.step()``, given
    ``x = ||w||^2`` and ``||g||^2`` the record computes anyway), then ``after`` it.

    The angle is ``atan2(||a|| ||d_perp||, x + s)`` with ``a = w`` before the step, ``d`` the step,
    ``s = <a, d>``, ``q = ||d||^2``, ``||d_perp||^2 = q - s^2/x`` (``angular_update``'s stable
    form). Where ``applied_step`` knows ``d`` these come from quantities the step already has,
    with no copy of ``w`` and no pass over ``w_after - w``:
    "momentum": ``d = -lr b`` (the buffer after the step), ``a = w_after - d``, so
    ``q = lr^2 ||b||^2`` and ``s = -lr <w_after, b> - q``: two dot products after the step;
    "plain": ``d = -lr (g + 2 l2 a)``, so ``s = -lr (<a, g> + 2 l2 x)`` and
    ``q = lr^2 (||g||^2 + 4 l2 <a, g> + 4 l2^2 x)``: one dot product before the step.
    Every sum in float64 from float32 one-pass dot products. This is the step as the optimizer
    computed it; the stored ``w_after`` differs from ``a + d`` by its rounding, ``eps32 ||w||/2``
    per entry, which moves the angle by about ``eps32/sqrt(d)`` relative to a step of
    ``||d||/||w||``: about 1e-6 at 1e-3 rad. Rows whose step is mostly radial (a dead unit only
    shrinks) take ``d_perp = d - (s/x) a`` elementwise, as ``angular_update`` does. Any other
    optimizer: ``w`` is copied before the step (into a buffer reused between steps) and
    ``angular_update`` measures the step.
    """

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self._work = {}  # name -> (w before the step, the step), for a measured step

    def before(self, name, p, group, x, g2):
        """What ``after`` needs of parameter ``name`` (``p``, in param group ``group``)."""
        kind = applied_step(self.optimizer, group)
        if kind == "momentum":
            return kind, x, group["lr"]
        if kind == "plain":
            l2 = group["l2"] if p.decay else 0.0
            return kind, x, group["lr"], l2, g2, row_dots(_rows(p.data, p.scale_group, "StepAngles"),
                                                          _rows(p.grad, p.scale_group, "StepAngles"))
        xp = backend.array_module(p.data)
        work = self._work.get(name)
        if work is None or work[0].shape != p.data.shape or work[0].dtype != p.data.dtype:
            work = self._work[name] = (xp.empty_like(p.data), xp.empty_like(p.data))
        xp.copyto(work[0], p.data)
        return None, x, work

    def after(self, p, token):
        """``(angle, ||b||^2)``: the angle per scale group (float64) and, on the "momentum"
        path, the squared buffer norm it used (None otherwise)."""
        kind, x = token[0], token[1]
        if kind is None:
            work = token[2]
            return angular_update(work[0], p.data, p.scale_group, sq_before=x, work=work[1]), None
        xp = backend.array_module(p.data)
        f64 = xp.float64  # few calls on purpose: at 256 groups these small ones are most of the cost
        w = _rows(p.data, p.scale_group, "StepAngles")
        if kind == "momentum":
            lr = token[2]
            buf = _rows(self.optimizer.state[p]["momentum_buffer"], p.scale_group, "StepAngles")
            bb = row_dots(buf, buf)
            q = xp.multiply(bb, lr * lr, dtype=f64)
            s = xp.multiply(row_dots(w, buf), -lr, dtype=f64)
            s -= q

            def rows_ad(rows):
                d = buf[rows] * -lr
                return w[rows] - d, d
        else:
            lr, l2, g2, wg = token[2:]
            bb, wg = None, wg.astype(f64)
            s = -lr * (wg + 2 * l2 * x)
            q = lr * lr * (g2.astype(f64) + 4 * l2 * wg + 4 * l2 * l2 * x)
            g = _rows(p.grad, p.scale_group, "StepAngles")

            def rows_ad(rows):  # w_after = a - lr (g + 2 l2 a)
                a = (w[rows] + lr * g[rows]) / (1 - 2 * lr * l2)
                return a, w[rows] - a
        ss = s * s
        cross = x * q
        cross -= ss                         # x ||d_perp||^2
        radial = cross < ss                 # s^2 > x q / 2
        if bool(radial.any()):
            rows = xp.nonzero(radial)[0]
            a, d = rows_ad(rows)
            dp = d - (s[rows] / x[rows])[:, None].astype(d.dtype) * a
            cross[rows] = x[rows] * row_dots(dp, dp).astype(f64)
        # cross >= s^2 >= 0 on the other rows (NaN stays NaN): no clipping needed before sqrt
        return xp.arctan2(xp.sqrt(cross, out=cross), x + s), bb


class Recorder:
    """Record a live model + optimizer at every ``optimizer.step()``: per scale group the
    History's "norm", "angle", "grad_norm_unit", "effective_lr", and "lr", "buffer_sq" (squared
    norm of SGD's momentum buffer) and, with ``lags=K``, "grad_dot" (rows, K+1, groups):
    ``<g_t, g_{t-m}>`` for m = 0..K (0 before step K). ``attach`` wraps ``step`` on that optimizer
    instance, so any loop records; ``detach`` restores it. Rows go to the host every step.

        rec = Recorder(model, optimizer, lags=20).attach()
        Trainer(model, optimizer, data, steps=3000, log_every=10**9).fit()
        compare(rec.detach()); gradient_correlation(rec)
    """

    def __init__(self, model, optimizer, lags=0):
        self.optimizer, self.lags = optimizer, int(lags)
        group_of = {id(p): i for i, g in enumerate(optimizer.param_groups) for p in g["params"]}
        self.tracked = [(n, p, group_of[id(p)]) for n, p in model.named_parameters()
                        if p.scale_group is not None and id(p) in group_of]
        self.params = {n: {"scale_group": p.scale_group, "shape": list(p.shape), "group": gi,
                           "n_groups": int(p.shape[0]) if p.scale_group == "unit" else 1}
                       for n, p, gi in self.tracked}
        self.config = {"optimizer": type(optimizer).__name__,
                       "param_groups": [{k: v for k, v in g.items() if k != "params"}
                                        for g in optimizer.param_groups]}
        self._rows, self._done, self._ring, self._count = {}, {}, {}, 0
        self._angles = StepAngles(optimizer)
        self._adam = "adam" in type(optimizer).__name__.lower()

    def attach(self):
        inner = self.optimizer.step

        def step():
            before = [self._row_before(n, p, gi) for n, p, gi in self.tracked]
            inner()
            self._add("step", self._count)
            self._count += 1
            for (n, p, _), token in zip(self.tracked, before):
                angle, bb = self._angles.after(p, token)
                self._add(f"angle/{n}", angle)
                buf = self.optimizer.state.get(p, {}).get("momentum_buffer")
                if buf is not None:  # the angle's ||b||^2 where it took one
                    self._add(f"buffer_sq/{n}", group_sq_norms(buf, p.scale_group) if bb is None else bb)
        self.optimizer.step = step
        return self

    def detach(self):
        self.optimizer.__dict__.pop("step", None)
        return self

    def _row_before(self, n, p, gi):
        group = self.optimizer.param_groups[gi]
        lr = group["lr"]
        x, g2 = group_sq_norms(p.data, p.scale_group), group_sq_norms(p.grad, p.scale_group)
        norm = x ** 0.5
        self._add(f"lr/{n}", lr)
        self._add(f"norm/{n}", norm)
        self._add(f"effective_lr/{n}", lr / (norm if self._adam else x))
        self._add(f"grad_norm_unit/{n}", norm * g2 ** 0.5)
        if self.lags:  # ring[:, m % (K+1)] holds g_m; one batched matvec gives every lag
            g = p.grad.reshape(p.shape[0] if p.scale_group == "unit" else 1, -1)
            xp = backend.array_module(g)
            if n not in self._ring:
                self._ring[n] = xp.zeros((g.shape[0], self.lags + 1, g.shape[1]), dtype=g.dtype)
            ring, slot = self._ring[n], self._count % (self.lags + 1)
            ring[:, slot] = g
            dots = xp.matmul(ring, g[:, :, None])[:, ::-1, 0]  # column m: lag (slot - m) mod K+1
            self._add(f"grad_dot/{n}", xp.roll(dots, slot + 1, axis=1).T)
        return self._angles.before(n, p, group, x, g2)

    def _add(self, key, value):
        self._rows.setdefault(key, []).append(backend.asnumpy(value) if hasattr(value, "shape") else value)

    @property
    def steps(self):
        """``{key: numpy array}`` of everything recorded so far (rows = optimizer steps)."""
        for k, rows in self._rows.items():
            if rows:
                block = np.asarray(rows)
                self._done[k] = block if k not in self._done else np.concatenate([self._done[k], block])
                rows.clear()
        return dict(self._done)
