"""Prediction: the equilibrium forgets the initialization. From initial weights scaled by x0.25,
x1 and x4 (``w0_scale``: the function does not change) the steady effective lr and angle per
step agree, and the approach follows the relaxation rate the theory gives from the
hyperparameters: ``||w||^4`` relaxes at ``8 lr lam`` per step under SGD + L2
(``theory.sgd_l2_equilibrium``: ``x' = q^2 x + lr^2 G2/x`` with ``q = 1 - 2 lr lam``, linearized),
``||w||^2`` at ``2 lr wd`` under AdamW (``theory.adamw_equilibrium``: ``x' = (1 - lr wd)^2 x + lr^2 ||u||^2``
with Adam's step ``u`` scale-free, so the added term does not depend on ``x``).

Runs: the fully invariant BN MLP (no gamma/beta, frozen head), SGD + L2 and AdamW at one
setting each, from the three initial scales, same seed (same initial directions, same batches).

Claims (kind "prediction", inputs: the hyperparameters):
- relaxation (registered first, broad): for the x0.25 and x4 runs, the slope of ``log |y_t - y_late|`` (``y`` the median unit's
  ``||w||^4``, SGD, or ``||w||^2``, AdamW; ``y_late`` its mean over the last third) fitted over steps
  ``[0.25, 2] / rate`` (a window set by the predicted rate, disjoint from the last third) equals the
  predicted rate; worst layer and run. The measured quantity is the fitted rate. On Fashion-MNIST
  the x0.25 runs start within a few times their equilibrium (SGD) or at it (AdamW), where the
  distance is set by the drift of G2 in the first hundred steps, not by the relaxation; this claim
  fails there and stays, with that diagnosis in its note. Beside it, narrower: the x4 runs
  (starting 30-250,000x above the equilibrium).
- steady state: over the last third, median over units of lr/||w||^2 (SGD) or lr/||w|| (AdamW) and of
  the RMS angle, x0.25 and x4 runs over the x1 run (unit by unit) = 1; worst layer and run.
- return after a rescale (added beside the relaxation claim, which stays failed; the referee's
  test): one x1 run per optimizer settles for ``T = rescale_at`` steps; at step ``T`` its
  scale-invariant weights are multiplied by ``c`` (2 and 1/2) together with the optimizer state
  (``tasks.rescale_at``), so the function does not change and the run goes on from the settled
  network, rescaled; one task per optimizer trains the first ``T`` steps once and branches
  (``tasks.rescale_branches``). Measured: the half-way time of the return of ``y/y*`` (``y`` the median
  unit's ``||w||^4``, SGD, or ``||w||^2``, AdamW, per step; ``y*`` its mean over steps
  ``[(1 - RESCALE_PRE) T, T)``, before the rescale: an earlier, disjoint window that only sets the
  half-way level, with the start ``c^p y_T``); predicted: the same time on ``return_curve``
  (hyperparameters and ``c`` only); worst layer. One claim per optimizer (SGD, AdamW, SGD +
  momentum) and direction. On
  Fashion-MNIST (default preset) x2 holds for both and x1/2 for AdamW (within 4%); SGD from x1/2
  fails by 77%: the 4x effective lr moves G2 (layer 1's fell by 30%), and SGD's equilibrium
  ``||w||^4`` is proportional to it. On the quick preset AdamW from x2 is 10-20% slow: its steps
  grow more than v's lag accounts for (successive gradients correlate more while the weights turn
  slower). SGD + momentum 0.9 (lr 0.01, the same predicted rate) misses both ways on every seed:
  from x2 25-30% slow, from x1/2 30-40% fast. Failed rows carry these measurements in their notes.
Tolerances: the registry's calibration rule (``refnet.experiments.registry``), ``max(floor,
3 x spread)``, the spread the seed-to-seed standard deviation of each claim's error over quick
seeds 1-4 (``refnet calibrate``, committed in ``refnet/experiments/calibration.json``; never the
judged seed 0). The literal ``TOL`` and ``TOL_RETURN`` below are only the fallback for a claim
with no record there (set by hand earlier, 1.5x the largest change between quick seeds 1-3); each
row's ``tolerance_source`` says which one it was held to.
CPU-seconds per preset: the table in ``refnet.experiments.config``.

The return after a rescale, derived (the paper's convention: L2 adds ``lam ||w||^2`` to the loss,
gradient ``2 lam w``; AdamW's ``wd`` is decoupled). ``x = ||w||^2``, ``k`` steps after the rescale.

SGD + L2: ``w' = q w - lr g``, ``q = 1 - 2 lr lam``, ``g`` orthogonal to ``w``, so exactly
(identity 4) ``x' = q^2 x + lr^2 G~/x``, ``G~ = ||g||^2 x`` the squared gradient at the unit point.
Rescaling does not change ``w/||w||``, hence not ``G~``: hold it at its settled mean ``G2``, whose
fixed point ``x*`` has ``x*^2 (1 - q^2) = lr^2 G2``. In ``u = x/x*``:

    u' = q^2 u + (1 - q^2)/u,   u_0 = c^2.

For ``y = u^2 = ||w||^4/||w*||^4`` the growth term is constant: ``y' = q^4 y + 2 q^2 (1 - q^2)
+ (1 - q^2)^2/y``, and in continuous time ``dy/dt = -2 (1 - q^2)(y - 1)`` exactly, so
``y = 1 + (c^4 - 1) exp(-8 lr lam (1 - lr lam) k)`` from either side and for any ``c`` (the
half-way time ``ln 2/(8 lr lam)``, 43 steps at ``lr lam = 2e-3``). The last, discrete term is
``2 lr lam / y`` of the growth term (6% at the first step from ``c = 1/2``); ``return_curve``
iterates the exact map and keeps it. What can break it: ``G~`` moving after the rescale (a
rescale by ``c`` changes the effective lr by ``1/c^2``, and the network responds to that).

AdamW: ``w' = p w - s``, ``p = 1 - lr wd``, ``s = lr m_hat/(sqrt(v_hat) + eps)``. With the state
carried along the symmetry (``m -> m/c``, ``v -> v/c^2``) ``s`` does not change at the rescale,
and ``x' = p^2 x + B``, ``B = -2 p <w, s> + ||s||^2`` (theory/README.md section 7; ``<w, m>`` is
invariant), ``B = (1 - p^2) x*`` at equilibrium. If ``v`` kept up, ``B`` would not depend on
``x`` (Adam's step is scale-free): ``u = 1 + (c^2 - 1) p^(2k)``, rate ``2 lr wd`` (the law in
OPTS). But ``||s||^2`` scales as ``g^2/v``, ``g^2 ~ 1/x``, and ``v`` follows ``g^2`` over
``1/(1 - b2)`` steps (100 at ``b2 = 0.99``), longer than ``1/(2 lr wd)`` (62 here). Mean field
(as ``theory.adam_growth``), ``a`` the EMA of ``1/u`` that ``v`` holds, in units of its settled value:

    a_k = b2 a_(k-1) + (1 - b2)/u_k,   u_(k+1) = p^2 u_k + (1 - p^2)/(u_k a_k),   u_0 = c^2, a_(-1) = 1/c^2.

Linearized, the slow rate is ``((4 e + b) - sqrt(16 e^2 + b^2))/2``, ``e = lr wd``, ``b = 1 - b2``
(theory/README.md section 14): 0.0042 per step here, not 0.016. Nonlinear, the two directions
differ (half-way 50 steps from ``c = 2``, 158 from ``c = 1/2``). ``m``'s own lag (``1/(1 - b1)``,
10 steps) is left out.

SGD + heavy-ball momentum ``mu``: the buffer's radial part averages ``2 lam w`` over ``1/(1 - mu)``
steps, so the norm shrinks as with ``lam/(1 - mu)`` (theory/README.md section 5): the SGD map with
``q = 1 - 2 lr lam/(1 - mu)``, rate ``8 lr lam/(1 - mu)``. The buffer mixes the L2 term, which
scales as ``c``, with gradients, which scale as ``1/c``, so no state carries along exactly:
``tasks.rescale_at`` multiplies its part along ``w`` by ``c`` and the rest by ``1/c``. The
momentum norm also carries the factor ``S`` of correlated gradients (momentum_S), which the
turn's speed, hence the rescale, changes; the law holds ``S`` fixed.
"""

import numpy as np

import theory
from refnet.experiments import config, registry
from refnet.experiments.measure import label, layers
from refnet.experiments.runner import Runner

NAME, FIGURE = "init_forgetting", "fig12_init_forgetting.png"
# Fallback tolerances, held only by a claim that calibration.json has no record of: the registry
# replaces them with its rule, max(floor, 3 x spread) over quick seeds 1-4. Set by hand before that
# rule (quick preset, batch orders 1-3, same init, 2026-12-07) from the largest run-to-run change
# of the steady ratios (median over units of the per-unit ratio between batch orders): SGD eff. lr
# 7.4%, angle 0.6%; AdamW eff. lr 1.8%, angle 0.8% -> 1.5x. Fitted rates moved by < 0.5% (x4) and
# 1.6% (x0.25) between batch orders -> SGD 1%; AdamW's rate also carries v's 1/(1-b2) lag, which
# THEORY.md puts at 1-4% for b2 = 0.99 -> 4% + 1%.
TOL = {"sgd": {"rate": 0.01, "efflr": 0.11, "angle": 0.0095},
       "adamw": {"rate": 0.05, "efflr": 0.027, "angle": 0.012}}
CALIBRATION = ("fallback set by hand before the registry's calibration rule (max(floor, 3 x spread) over quick "
               "seeds 1-4, calibration.json), which replaces it: 1.5x the run-to-run change over batch orders 1-3 "
               "(quick preset): SGD eff. lr 7.4%, angle 0.6%, rate < 1%; AdamW eff. lr 1.8%, angle 0.8%, rate < 1% "
               "plus THEORY.md's 1-4% lag allowance")
WINDOW = 1 / 3
FIT = (0.25, 2.0)  # the fit window, in units of the predicted relaxation time
OPTS = {"sgd": ("SGD + L2", "||w||^4 relaxes at 8 lr lam per step", "theory.sgd_l2_equilibrium"),
        "adamw": ("AdamW", "||w||^2 relaxes at 2 lr wd per step", "theory.adamw_equilibrium")}
_NET = "every hidden layer of the fully invariant BN MLP"
registry.register(*(e for opt, (name, what, theo) in OPTS.items() for e in (
    registry.Entry(f"init_{opt}_rate", f"{name}, fully invariant net, w0 x0.25 and x4: {what}", "prediction",
                   f"{_NET}; the x0.25 and x4 runs, fitted over {FIT[0]:g}-{FIT[1]:g} predicted relaxation times",
                   TOL[opt]["rate"], CALIBRATION, theo, FIGURE),
    registry.Entry(f"init_{opt}_rate_above", f"{name}, fully invariant net, w0 x4 (from far above): {what}",
                   "consistency", f"{_NET}; the x4 run, fitted over {FIT[0]:g}-{FIT[1]:g} predicted relaxation times",
                   TOL[opt]["rate"], CALIBRATION, theo, FIGURE,
                   "added after the claim above failed for the x0.25 runs; not counted as a prediction: from 3e4 "
                   "to 3e5 times above the equilibrium the distance shrinks by the decay factor alone "
                   "(SGD: (1 - 2 lr lam)^4 per step, fitted rate -4 ln(1 - 2 lr lam) = 8 lr lam (1 + lr lam)), "
                   "so it checks the optimizer's decay, not the return to the G2-set equilibrium"),
    registry.Entry(f"init_{opt}_efflr", f"{name}, fully invariant net: the steady effective lr forgets w0 "
                   "(x0.25, x4 vs x1)", "prediction", f"{_NET}; the x0.25 and x4 runs over the x1 run, unit by unit, last third",
                   TOL[opt]["efflr"], CALIBRATION, theo, FIGURE),
    registry.Entry(f"init_{opt}_angle", f"{name}, fully invariant net: the steady angle forgets w0 (x0.25, x4 vs x1)",
                   "consistency" if opt == "sgd" else "prediction",
                   f"{_NET}; the x0.25 and x4 runs over the x1 run, unit by unit, last third",
                   TOL[opt]["angle"], CALIBRATION, theo, FIGURE, registry.STATIONARY if opt == "sgd" else ""))))

# The return after a rescale (issue 15, item 3): a settled run's scale-invariant weights (and its
# optimizer state) multiplied by c at step T; the half-way time of the return of y = ||w||^p / y*.
RESCALE_PRE = 0.2  # the equilibrium level y*: steps [(1 - RESCALE_PRE) T, T), before the rescale; the run has settled
# by then (x1 runs from step 0.8 T on: AdamW within 1-4% of its late level, SGD within 1-14%, its
# layer 1 following G2's drift)
# Fallback tolerances of the return claims, held only without a record in calibration.json (the
# registry's rule, max(floor, 3 x spread) over quick seeds 1-4, replaces them). Set by hand before
# that rule (quick preset, T 1000, K 300, seeds 1-3 = other inits and batch orders, 2026-12-07)
# from the worst layer's measured half-way time, in steps (predicted: SGD 43.2 / 42.5, AdamW 49.5 / 158):
#   SGD x2 44.0, 41.0, 42.1; SGD x1/2 105, 103, 91; AdamW x2 57.7, 53.9, 57.8; AdamW x1/2 197, 186, 113.
# Fallback = 1.5x the largest change between seeds: x2 7.2% (SGD), 7.1% (AdamW) -> 0.11; SGD x1/2 15%
# -> 0.23. AdamW x1/2: 19% between seeds 1 and 2, 74% with seed 3, whose layer 2 saw G2 rise 15% after
# the rescale (v's lag turns that into larger steps); 1.5x 74% = 1.1 would not tell the lag-limited law
# from the one-variable one (half-way 43 steps: error 0.73), so 0.3 (1.5x 19%) is the fallback, and seed 3
# would fail it. SGD + momentum 0.9 (lr 0.01: the same 8 lr lam/(1 - mu)): x2 53.0, 52.7, 52.0 -> 2.0%
# -> 0.03; x1/2 30.2, 26.0, 27.7 -> 16% -> 0.25 (both miss the prediction on every seed).
TOL_RETURN = {("sgd", "above"): 0.11, ("sgd", "below"): 0.23, ("adamw", "above"): 0.11, ("adamw", "below"): 0.3,
              ("momentum", "above"): 0.03, ("momentum", "below"): 0.25}
TOL_RETURN_SOURCE = ("fallback set by hand before the registry's calibration rule (max(floor, 3 x spread) over "
                     "quick seeds 1-4, calibration.json), which replaces it: 1.5x the largest change of the worst "
                     "layer's half-way time between quick seeds 1-3 (SGD x2 7.2%, x1/2 15%; AdamW x2 7.1%, x1/2 "
                     "19% without seed 3, 74% with it: seed 3 would fail the 0.3 held here; SGD + momentum x2 "
                     "2.0%, x1/2 16%)")
RETURN = {"sgd": ("SGD + L2", "||w||^4", "y_k/y* = u_k^2, u_(k+1) = q^2 u_k + (1 - q^2)/u_k, u_0 = c^2, "
                  "q = 1 - 2 lr lam (identity 4 with G2 held at its settled value; ~ 1 + (c^4 - 1) exp(-8 lr lam k))"),
          "momentum": ("SGD + momentum + L2", "||w||^4", "as SGD + L2 with lam -> lam/(1 - mu): q = 1 - 2 lr lam/(1 - mu), "
                       "rate 8 lr lam/(1 - mu) (theory/README.md section 5; the buffer's radial part averages "
                       "2 lam w over 1/(1 - mu) steps)"),
          "adamw": ("AdamW", "||w||^2", "u_(k+1) = p^2 u_k + (1 - p^2)/(u_k a_k), a_k = b2 a_(k-1) + (1 - b2)/u_k, "
                    "u_0 = c^2, a_(-1) = 1/c^2, p = 1 - lr wd (the step's mean square follows v, which lags "
                    "1/(1 - b2) steps: theory/README.md section 14)")}
RETURN_THEORY = {"sgd": "theory.sgd_l2_equilibrium", "momentum": "theory.sgd_momentum_l2_equilibrium",
                 "adamw": "theory.adam_growth"}
registry.register(*(
    registry.Entry(f"init_{opt}_return_{side}", f"{name}, fully invariant net, settled run rescaled x{c} at step T: "
                   f"the half-way time of the return of {what} to its equilibrium, predicted from the hyperparameters",
                   "prediction", f"{_NET}; one settled run (w0 x1, T steps) rescaled x{c} with its optimizer state",
                   TOL_RETURN[(opt, side)], TOL_RETURN_SOURCE, RETURN_THEORY[opt] + f" (the return: {law}; "
                   "refnet.experiments.init_forgetting.return_curve)",
                   FIGURE, narrows=f"init_{opt}_rate" if opt in OPTS else None)
    for opt, (name, what, law) in RETURN.items() for side, c in (("above", "2"), ("below", "1/2"))))


def runs(cfg, seed=None):
    c = cfg[NAME]
    seed = cfg["seed"] if seed is None else seed
    out = []
    for opt in ("sgd", "adamw"):
        for s in c["scales"]:
            m = config.model(cfg, width=c["width"], seed=seed, affine=False, train_head=False, w0_scale=s)
            o = (config.sgd(c["sgd_lr"], c["sgd_lam"], l2_scope="invariant") if opt == "sgd" else
                 config.adam(cfg, c["adamw_lr"], weight_decay=c["adamw_wd"], l2_scope="invariant"))
            out.append(({"opt": opt, "scale": s}, config.train(cfg, m, o, c["steps"], window=WINDOW, seed=seed)))
    T, K = c["rescale_at"], c["rescale_steps"]
    for opt in ("sgd", "adamw", "momentum"):  # sgd, adamw: the first T steps of the x1 run (same seed: same
        m = config.model(cfg, width=c["width"], seed=seed, affine=False, train_head=False)  # batches), trained
        o = (config.sgd(c["sgd_lr"], c["sgd_lam"], l2_scope="invariant") if opt == "sgd" else  # once, then one
             config.sgd(c["momentum_lr"], c["sgd_lam"], momentum=c["momentum"], l2_scope="invariant")  # branch
             if opt == "momentum" else  # per c
             config.adam(cfg, c["adamw_lr"], weight_decay=c["adamw_wd"], l2_scope="invariant"))
        out.append(({"opt": opt, "scale": 1.0, "rescale": list(c["rescale"])},
                    config.train(cfg, m, o, T + K, window=K / (T + K), seed=seed, trace_every=1,
                                 rescale={"at": T, "factors": list(c["rescale"])})))
    return out


def branches(h, result):
    """A ``rescale_branches`` result as one ``(header, (arrays, meta))`` per factor."""
    arrays, meta = result
    return [(dict(h, rescale=f), ({k[len(f"branch{i}/"):]: v for k, v in arrays.items()
                                   if k.startswith(f"branch{i}/")}, meta)) for i, f in enumerate(h["rescale"])]


def specs(cfg):
    return [s for _, s in runs(cfg)]


def slow_rate(cfg, opt):
    """The slowest linearized rate of the return (per step): SGD ``8 lr lam``; AdamW the
    lag-limited ``((4 e + b) - sqrt(16 e^2 + b^2))/2``, ``e = lr wd``, ``b = 1 - b2`` (theory/README.md
    section 14), which is ``2 lr wd`` only while ``2 lr wd << 1 - b2``."""
    if opt != "adamw":
        return 8 * lr_lam(cfg, opt)
    e, b = cfg[NAME]["adamw_lr"] * cfg[NAME]["adamw_wd"], 1 - cfg["adam_betas"][1]
    return float(((4 * e + b) - np.sqrt(16 * e * e + b * b)) / 2)


def lag_note(cfg, opt):
    if opt == "sgd":
        return "; the return of a settled run after a rescale is judged beside it (init_sgd_return_*)"
    e, b = cfg[NAME]["adamw_lr"] * cfg[NAME]["adamw_wd"], 1 - cfg["adam_betas"][1]
    return (f"; besides, 2 lr wd is the rate only while v keeps up (2 lr wd << 1 - b2), and here "
            f"2 lr wd = {2 * e:.3g}, 1 - b2 = {b:.3g}: theory/README.md section 14 puts the approach at the "
            f"lag-limited rate {slow_rate(cfg, opt):.2g}; the return of a settled run after a rescale, with the lag, is judged "
            "beside it (init_adamw_return_*)")


def predicted_rate(cfg, opt):
    c = cfg[NAME]
    if opt == "sgd":
        return theory.sgd_l2_equilibrium(c["sgd_lr"], c["sgd_lam"], 1.0).relaxation_rate
    return theory.adamw_equilibrium(c["adamw_lr"], c["adamw_wd"], 1, tuple(cfg["adam_betas"])).relaxation_rate


def return_curve(cfg, opt, c, n):
    """Predicted ``y_k / y*`` for ``k = 0..n`` updates after the scale-invariant weights (and the
    optimizer state) are multiplied by ``c`` at equilibrium: ``y = ||w||^4`` (SGD + L2) or
    ``||w||^2`` (AdamW); see the module docstring. Hyperparameters only."""
    h = cfg[NAME]
    u, out = c * c, np.empty(n + 1)
    out[0] = u if opt == "adamw" else u * u
    if opt != "adamw":
        q2 = (1 - 2 * lr_lam(cfg, opt)) ** 2
        for k in range(n):
            u = q2 * u + (1 - q2) / u
            out[k + 1] = u * u
        return out
    p2, b2, a = (1 - h["adamw_lr"] * h["adamw_wd"]) ** 2, cfg["adam_betas"][1], 1 / (c * c)
    for k in range(n):
        a = b2 * a + (1 - b2) / u
        u = p2 * u + (1 - p2) / (u * a)
        out[k + 1] = u
    return out


def lr_lam(cfg, opt):
    """``lr lam`` of SGD + L2; with momentum ``mu`` the buffer's radial part averages ``2 lam w``
    over ``1/(1 - mu)`` steps, so ``lr lam/(1 - mu)``."""
    h = cfg[NAME]
    if opt == "momentum":
        return h["momentum_lr"] * h["sgd_lam"] / (1 - h["momentum"])
    return h["sgd_lr"] * h["sgd_lam"]


def step2_predicted(cfg, opt, pred, n):
    """The predicted mean square of the step's tangential part over updates ``1..n`` after the
    rescale, relative to the settled one: SGD ``lr^2 G2/x`` gives ``1/u``; AdamW's ``B_k/B* =
    1/(u_k a_k)``, read back from the curve as ``(u_(k+1) - p^2 u_k)/(1 - p^2)``."""
    h, u = cfg[NAME], np.asarray(pred, dtype=float)
    n = max(1, min(int(n), u.size - 1))
    if opt != "adamw":
        return float(np.mean(1 / np.sqrt(u[:n])))
    p2 = (1 - h["adamw_lr"] * h["adamw_wd"]) ** 2
    return float(np.mean((u[1:n + 1] - p2 * u[:n]) / (1 - p2)))


def half_time(y, start, mid):
    """Steps until a curve first reaches ``mid``, interpolated linearly between steps: ``start``
    its value after 0 steps, ``y[j]`` after ``j + 1``. NaN if it never does."""
    y = np.asarray(y, dtype=float)
    side = np.sign(start - mid)
    past = np.flatnonzero((y - mid) * side <= 0)
    if not past.size:
        return float("nan")
    k = past[0]
    prev = start if k == 0 else y[k - 1]
    return float(k + (prev - mid) / (prev - y[k]))


def return_rows(cfg, arrays, meta, opt, c):
    """Measured and predicted half-way times of the return after the rescale, per layer, and the
    curves (``y/y*`` per step after it) for the figure. Measured: from where the layer started
    (``c^p`` times its record at step T, which fluctuates about ``y*``) to half-way to ``y*``;
    predicted: the same on ``return_curve``, which starts at ``c^p``."""
    h = cfg[NAME]
    T, K, power = h["rescale_at"], h["rescale_steps"], 2 if opt == "adamw" else 4
    step = np.asarray(arrays["trace/step"])
    pred = return_curve(cfg, opt, c, K)
    start, mid = pred[0], 1 + (pred[0] - 1) / 2
    t_pred = half_time(pred[1:], start, mid)
    out = []
    for i, name in enumerate(layers(meta)):
        y = arrays[f"{name}/trace/norm"][:, 1] ** power
        ystar = float(y[(step >= (1 - RESCALE_PRE) * T) & (step < T)].mean())
        post = y[step > T] / ystar  # the record of step T + k holds w after k updates from c w_T
        y0 = c ** power * float(y[step == T][0]) / ystar  # where it started: c^p times the rescaled record
        g2 = arrays[f"{name}/trace/G2"][:, 1]
        # the step's tangential mean square, (angle ||w||)^2: what the laws take from the settled run
        s2 = (arrays[f"{name}/trace/angle"][:, 1] * arrays[f"{name}/trace/norm"][:, 1]) ** 2
        first = (step > T) & (step <= T + 2 * t_pred)  # the return's first two half-way times
        before = (step >= (1 - RESCALE_PRE) * T) & (step < T)
        out.append({"layer": label(i, name), "ystar": ystar, "measured": post.tolist(), "t_pred": t_pred,
                    "start": y0, "t_meas": half_time(post, y0, 1 + (y0 - 1) / 2),
                    "G2_after": float(g2[first].mean() / g2[before].mean()),
                    "step2_after": float(s2[first].mean() / s2[before].mean()),
                    "step2_pred": step2_predicted(cfg, opt, pred, int(2 * t_pred))})
    return out, pred.tolist()


def fitted_rate(step, y, rate, total):
    """Minus the slope of ``log |y - y_late|`` over steps ``FIT / rate``; ``y_late`` the mean of
    ``y`` over the last ``WINDOW`` of the ``total`` steps. NaN when the window holds < 3 points."""
    step, y = np.asarray(step, dtype=float), np.asarray(y, dtype=float)
    late = y[step >= total * (1 - WINDOW)].mean()
    sel = (step >= FIT[0] / rate) & (step <= FIT[1] / rate) & (np.abs(y - late) > 0)
    if sel.sum() < 3:
        return float("nan"), late
    return float(-np.polyfit(step[sel], np.log(np.abs(y[sel] - late)), 1)[0]), late


def analyze(cfg, results):
    c = cfg[NAME]
    data = {"name": NAME, "figure": FIGURE, "scales": c["scales"], "steps": c["steps"], "fit": list(FIT),
            "runs": {"sgd": [], "adamw": []}, "claims": [], "observations": []}
    base, pairs = {}, list(zip(runs(cfg), results))
    rescaled = [b for (h, _), r in pairs if "rescale" in h for b in branches(h, r)]
    pairs = [p for p in pairs if "rescale" not in p[0][0]]
    for (h, _), (arrays, meta) in pairs:
        if h["scale"] == 1.0:
            base[h["opt"]] = arrays
    rows = {(o, k): [] for o in ("sgd", "adamw") for k in ("rate", "rate_above", "efflr", "angle")}
    for (h, spec), (arrays, meta) in pairs:
        opt, power = h["opt"], 4 if h["opt"] == "sgd" else 2
        rate = predicted_rate(cfg, opt)
        step = arrays["trace/step"]
        run = {"scale": h["scale"], "step": step.tolist(), "layers": {}}
        for i, name in enumerate(layers(meta)):
            y = arrays[f"{name}/trace/norm"][:, 1] ** power
            fit, late = fitted_rate(step, y, rate, spec["steps"])
            run["layers"][name] = {"y": y.tolist(), "late": late, "fitted_rate": fit,
                                   "efflr": arrays[f"{name}/trace/efflr"][:, 1].tolist()}
            tag = f"{label(i, name)}, w0 x{h['scale']:g}"
            if h["scale"] != 1.0:
                rows[(opt, "rate")].append((rate, fit, tag))
                data.setdefault("start", {})[f"{opt}, {tag}"] = float(y[0] / late)
                for k in ("efflr", "angle"):
                    rows[(opt, k)].append((1.0, float(np.median(arrays[f"{name}/win/{k}"] /
                                                                base[opt][f"{name}/win/{k}"])), tag))
            if h["scale"] == max(c["scales"]):
                rows[(opt, "rate_above")].append((rate, fit, tag))
        data["runs"][opt].append(run)
    hyper = {"sgd": [f"SGD lr {c['sgd_lr']:g}, lam {c['sgd_lam']:g}"],
             "momentum": [f"SGD lr {c['momentum_lr']:g}, momentum {c['momentum']:g}, lam {c['sgd_lam']:g}"],
             "adamw": [f"AdamW lr {c['adamw_lr']:g}, wd {c['adamw_wd']:g}, betas {tuple(cfg['adam_betas'])}"]}
    steps = c["steps"]
    late = f"steps {int(round(steps * (1 - WINDOW)))}-{steps}"
    for opt in OPTS:
        rate = predicted_rate(cfg, opt)
        fit = f"steps {int(FIT[0] / rate)}-{int(FIT[1] / rate)}"
        fitq = f"fitted decay rate of |y - y_late| over steps {FIT[0]:g}-{FIT[1]:g} relaxation times"
        broad = registry.worst(f"init_{opt}_rate", rows[(opt, "rate")], fitq, inputs=hyper[opt],
                               window=f"runs {NAME} {opt} x0.25 and x4, {fit}")
        if not broad["pass"]:
            starts = ", ".join(f"{k.split(', ', 1)[1]}: {v:.3g}" for k, v in data["start"].items() if k.startswith(opt))
            broad["note"] = ("measured cause: the start y_0/y_late was " + starts + "; near the equilibrium (x0.25) the "
                             "distance follows G2's drift while the network learns, not the relaxation"
                             + lag_note(cfg, opt))
        steady = "median over units of the ratio to the x1 run, last third"
        data["claims"] += [
            broad,
            registry.worst(f"init_{opt}_rate_above", rows[(opt, "rate_above")], fitq, inputs=hyper[opt],
                           window=f"run {NAME} {opt} x4, {fit}"),
            registry.worst(f"init_{opt}_efflr", rows[(opt, "efflr")], steady, inputs=hyper[opt],
                           window=f"runs {NAME} {opt} x0.25, x1 and x4, {late}"),
            registry.worst(f"init_{opt}_angle", rows[(opt, "angle")], steady, inputs=hyper[opt],
                           window=f"runs {NAME} {opt} x0.25, x1 and x4, {late}")]
    data["rate"] = {o: predicted_rate(cfg, o) for o in ("sgd", "adamw")}
    data["claims"] += rescale_claims(cfg, rescaled, data, hyper)
    return data


def rescale_claims(cfg, rescaled, data, hyper):
    """The return after the rescale: one prediction per optimizer and direction, worst layer."""
    c = cfg[NAME]
    T, K = c["rescale_at"], c["rescale_steps"]
    data["rescale"] = {"at": T, "steps": K, "pre": RESCALE_PRE, "runs": []}
    claims = []
    for (h, (arrays, meta)) in rescaled:
        opt, f = h["opt"], h["rescale"]
        per_layer, pred = return_rows(cfg, arrays, meta, opt, f)
        data["rescale"]["runs"].append({"opt": opt, "factor": f, "predicted": pred, "layers": per_layer,
                                        "linear": linear_curve(cfg, opt, f, K)})
        side = "above" if f > 1 else "below"
        pre = f"y* = the median unit's {RETURN[opt][1]} over steps {int(round((1 - RESCALE_PRE) * T))}-{T} " \
              "of the same run, before the rescale (an earlier, disjoint window; it sets the half-way level only)"
        rows = [(r["t_pred"], r["t_meas"], f"{r['layer']}, x{f:g}") for r in per_layer]
        row = registry.worst(f"init_{opt}_return_{side}", rows, "half-way time of the return (steps)",
                             inputs=hyper[opt] + [f"rescale x{f:g} at step {T}", pre],
                             window=f"run {NAME} {opt} rescaled x{f:g}, steps {T + 1}-{T + K}")
        if not row["pass"]:
            g2 = ", ".join(f"{r['layer'].split(' (')[0]}: {r['G2_after']:.2f}" for r in per_layer)
            why = ("1/c^2, and SGD's equilibrium ||w||^4 is proportional to G2 (AdamW's does not depend on it)"
                   if opt != "adamw" else "1/c")
            st = ", ".join(f"{r['layer'].split(' (')[0]}: {r['step2_after']:.2f}" for r in per_layer)
            row["note"] = ("measured: the law holds G2 (the gradient at the unit point) and the step's statistics at "
                           "their settled values; over the first two predicted half-way times after the rescale G2 was "
                           f"{g2} times its mean before, and the step's tangential mean square {st} (predicted "
                           f"{per_layer[0]['step2_pred']:.2f}). Where these moved, the network's gradients answered the "
                           f"effective lr, which changed by {why}"
                           + ("" if opt == "sgd" else "; with a slower (faster) turn, successive gradients correlate "
                              "more (less), and momentum adds them up")
                           + ("; where they did not, the radial part of the update (lam/(1 - mu)) is what missed"
                              if opt == "momentum" else ""))
        claims.append(row)
    return claims


def linear_curve(cfg, opt, c, n):
    """The one-variable law (no lag, G2 fixed): ``y_k/y* = 1 + (c^p - 1) r^k``, ``r = q^4`` (SGD) or
    ``p^2`` (AdamW: the 2 lr wd law, which assumes v keeps up)."""
    h, k = cfg[NAME], np.arange(n + 1)
    if opt != "adamw":
        return (1 + (c ** 4 - 1) * (1 - 2 * lr_lam(cfg, opt)) ** (4 * k)).tolist()
    return (1 + (c * c - 1) * (1 - h["adamw_lr"] * h["adamw_wd"]) ** (2 * k)).tolist()


def run(cfg=None, runner=None):
    """The data of this prediction (see the module docstring)."""
    cfg = cfg or config.make_config()
    return analyze(cfg, (runner or Runner()).map(specs(cfg), desc=NAME))
