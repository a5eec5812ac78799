"""L2 is a learning-rate schedule (Li & Arora 2020; identity 6 and README section 24): on
scale-invariant weights, SGD (+ heavy-ball momentum ``mu``) + L2 ``lam`` at ``lr`` is SGD
(+ momentum) without L2 at ``lr_t = lr r^(-2t-1)``, ``r`` the larger root of
``r^2 - (1 + mu - 2 lr lam) r + mu = 0`` (``r = 1 - 2 lr lam`` at ``mu = 0``: the paper's l2
convention, gradient ``2 lam w``; PyTorch's ``weight_decay = 2 lam`` gives Li & Arora's
``1 - lr wd``), with momentum started from the buffer ``-(1 - r)/(r lr) w_0``
(``theory.exponential_lr_momentum``, ``theory.exponential_lr_initial_buffer``).

Identity (kind "identity"): on the fully invariant BN MLP (no gamma/beta, frozen head) in
float64 with BN eps = 0, the two runs give the same test outputs (batch statistics: BN's running
averages mix steps taken at different scales) to rounding: largest change of a softmax output,
tolerance 1e-9, with ``mu = 0`` and ``mu = 0.9``. Observation: with momentum from a zero buffer
the outputs drift apart (what the initial buffer fixes).

Prediction (kind "prediction", inputs: the hyperparameters and theory's schedule): on the
ordinary network (trained gamma, beta and head, float32, BN eps = 1e-5, which breaks the identity:
the runs drift apart within a few hundred steps), with the schedule applied to the
scale-invariant weights only (L2 on those weights only in the other run), the two runs classify
the test images equally well: 0.5 lies in the exact 95% interval (Clopper-Pearson,
``scipy.stats.binomtest``) of the share of the discordant test images that the L2 run gets right
(McNemar's exact test, paired over the same images). The row's measured number is the distance
of 0.5 from that interval (0 inside), tolerance 0: the 95% level is fixed in advance.
CPU-seconds per preset: the table in ``refnet.experiments.config``.
"""

import numpy as np
from scipy import stats

import theory
from refnet.experiments import config, registry, tasks
from refnet.experiments.claims import observation
from refnet.experiments.measure import layers
from refnet.experiments.runner import Runner

NAME, FIGURE = "schedule", "fig13_schedule.png"
TOL_IDENTITY, LEVEL = 1e-9, 0.95
MOMENTUM = 0.9
_WHO = {"sgd": ("SGD", ""), "momentum": (f"SGD + momentum {MOMENTUM:g}", ", from the initial buffer of section 24")}
registry.register(*(e for k, (who, buf) in _WHO.items() for e in (
    registry.Entry(f"schedule_identity_{k}", f"{who} + L2 = SGD without L2 on lr_t = lr r^(-2t-1){buf} (fully "
                   "invariant net, float64, BN eps 0)", "identity", "the fully invariant BN MLP, float64, BN eps = 0; "
                   "every test output (softmax, batch statistics) after the identity run", TOL_IDENTITY,
                   "float64 rounding", "theory.exponential_lr_momentum", FIGURE),
    registry.Entry(f"schedule_accuracy_{k}", f"{who} + L2 vs the schedule on the scale-invariant weights only, "
                   "ordinary net (float32, BN eps 1e-5): same test accuracy", "prediction",
                   "the ordinary BN MLP (trained gamma, beta, head), eval mode, every test image, paired", 0.0,
                   f"exact {LEVEL:.0%} level, fixed in advance", "theory.exponential_lr_momentum", FIGURE))))


def runs(cfg, seed=None):
    """``(hyper, spec)`` pairs: for each setting, the L2 run then the schedule run."""
    c = cfg[NAME]
    seed = cfg["seed"] if seed is None else seed
    exact = config.model(cfg, width=c["width"], seed=seed, affine=False, train_head=False, dtype="float64", eps=0.0)
    ordinary = config.model(cfg, width=c["width"], seed=seed)
    out = []
    for part, model, steps, logits in (("identity", exact, c["identity_steps"], "batch"),
                                       ("prediction", ordinary, c["steps"], "both")):
        for mu, (lr, lam) in ((0.0, c["sgd"]), (MOMENTUM, c["momentum"])):
            kinds = ("l2", "schedule") + (("zero_buffer",) if part == "identity" and mu else ())
            for kind in kinds:
                o = (config.sgd(lr, lam, momentum=mu, l2_scope="invariant") if kind == "l2" else
                     config.sgd(lr, 0.0, momentum=mu, l2_scope="invariant",
                                exp_lr={"lam": lam, "buffer": kind == "schedule"}))
                out.append(({"part": part, "momentum": mu, "lr": lr, "lam": lam, "run": kind},
                            config.train(cfg, model, o, steps, keep_logits=logits, seed=seed)))
    return out


def specs(cfg):
    return [s for _, s in runs(cfg)]


def _probs(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def mcnemar(correct_a, correct_b, level=LEVEL):
    """Exact McNemar on paired correctness: ``b`` images only A gets right, ``c`` only B; returns
    ``(b, c, p_value, (lo, hi))`` with the Clopper-Pearson interval of ``b/(b+c)`` (``(0, 1)`` and
    p = 1 when no image is discordant)."""
    correct_a, correct_b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    b, c = int(np.sum(correct_a & ~correct_b)), int(np.sum(~correct_a & correct_b))
    if b + c == 0:
        return b, c, 1.0, (0.0, 1.0)
    test = stats.binomtest(b, b + c, 0.5)
    ci = test.proportion_ci(confidence_level=level, method="exact")
    return b, c, float(test.pvalue), (float(ci.low), float(ci.high))


def analyze(cfg, results):
    c = cfg[NAME]
    pairs = list(zip(runs(cfg), results))
    data = {"name": NAME, "figure": FIGURE, "identity": [], "prediction": [], "claims": [], "observations": []}
    by = {(h["part"], h["momentum"], h["run"]): (h, spec, r) for (h, spec), r in pairs}
    for mu in (0.0, MOMENTUM):
        h, _, (a, _) = by[("identity", mu, "l2")]
        p0 = _probs(a["test_logits"])
        for kind in ("schedule", "zero_buffer"):
            if ("identity", mu, kind) not in by:
                continue
            dp = float(np.abs(_probs(by[("identity", mu, kind)][2][0]["test_logits"]) - p0).max())
            data["identity"].append({"momentum": mu, "run": kind, "max_dprob": dp})
            if kind == "schedule":
                data["claims"].append(registry.row(
                    f"schedule_identity_{'momentum' if mu else 'sgd'}",
                    f"max |delta softmax| on the test set (batch statistics; lr {h['lr']:g}, lam {h['lam']:g})", 0.0, dp,
                    inputs=[f"the L2 run (lr {h['lr']:g}, lam {h['lam']:g}, momentum {mu:g})"],
                    window=f"run {NAME} schedule (momentum {mu:g}), end of {c['identity_steps']} steps"))
            else:
                data["observations"].append(observation(
                    f"SGD + momentum {mu:g}: the schedule from a ZERO momentum buffer", FIGURE,
                    "max |delta softmax| on the test set", dp, "not an identity: the buffer of section 24 is needed"))
    y = None
    for mu in (0.0, MOMENTUM):
        (h, spec, (a, ma)), (_, _, (b, mb)) = by[("prediction", mu, "l2")], by[("prediction", mu, "schedule")]
        if y is None:
            y = np.asarray(tasks.load_data(spec["data"]).y_test)
        ok_a, ok_b = a["test_logits"].argmax(1) == y, b["test_logits"].argmax(1) == y
        nb, nc, pval, (lo, hi) = mcnemar(ok_a, ok_b)
        n = len(y)
        name = layers(ma)[-1]
        row = {"momentum": mu, "lr": h["lr"], "lam": h["lam"], "acc_l2": float(ok_a.mean()),
               "acc_schedule": float(ok_b.mean()), "b": nb, "c": nc, "p_value": pval, "n": n,
               "diff": (nb - nc) / n, "diff_ci": [(nb + nc) / n * (2 * lo - 1), (nb + nc) / n * (2 * hi - 1)],
               "step": a["trace/step"].tolist(), "layer": name,
               "efflr_l2": a[f"{name}/trace/efflr"][:, 1].tolist(),
               "efflr_schedule": b[f"{name}/trace/efflr"][:, 1].tolist(),
               "lr_t": theory.exponential_lr_momentum(h["lr"], h["lam"], a["trace/step"], mu).tolist(),
               "agree": float(np.mean(a["test_logits"].argmax(1) == b["test_logits"].argmax(1)))}
        data["prediction"].append(row)
        ok_ab, ok_bb = a["test_logits_batch"].argmax(1) == y, b["test_logits_batch"].argmax(1) == y
        bb, cb, pb, (lob, hib) = mcnemar(ok_ab, ok_bb)
        row.update(acc_l2_batch=float(ok_ab.mean()), acc_schedule_batch=float(ok_bb.mean()), p_value_batch=pb,
                   diff_batch=(bb - cb) / n, diff_ci_batch=[(bb + cb) / n * (2 * lob - 1), (bb + cb) / n * (2 * hib - 1)],
                   norm_ratio=float(b[f"{name}/trace/norm"][-1, 1] / a[f"{name}/trace/norm"][-1, 1]))
        what = "SGD" + (f" + momentum {mu:g}" if mu else "")
        data["observations"].append(observation(
            f"{what} + L2 vs the schedule, ordinary net: the same comparison with BN's batch statistics instead of "
            "its running averages", FIGURE, "McNemar exact p-value (batch statistics)", pb,
            f"accuracy {row['acc_l2_batch']:.4f} vs {row['acc_schedule_batch']:.4f} (b={bb}, c={cb})"))
        dist = max(0.0, lo - 0.5, 0.5 - hi)
        cause = "" if dist == 0 else (
            f"; measured cause: with batch statistics instead of BN's running averages the accuracies are "
            f"{row['acc_l2_batch']:.4f} vs {row['acc_schedule_batch']:.4f} (McNemar p = {pb:.3g}); at the end the "
            f"schedule run's {name} is {row['norm_ratio']:.3g}x the L2 run's, so BN eps = 1e-5 weighs "
            f"{row['norm_ratio'] ** 2:.3g}x less in it, and its running averages lag a scale that grows every step")
        data["claims"].append(registry.row(
            f"schedule_accuracy_{'momentum' if mu else 'sgd'}",
            f"distance of 0.5 from the exact {LEVEL:.0%} interval of b/(b+c), McNemar (b={nb}, c={nc})", 0.0, dist,
            error_kind="absolute",
            inputs=[f"lr {h['lr']:g}, lam {h['lam']:g}, momentum {mu:g}", "the schedule lr_t (theory)"],
            window=f"runs {NAME} L2 and schedule (momentum {mu:g}), test set after {c['steps']} steps",
            note=f"accuracy {row['acc_l2']:.4f} (L2) vs {row['acc_schedule']:.4f} (schedule), p = {pval:.3g}, "
                 f"{row['agree']:.3f} of the test predictions agree" + cause))
    return data


def run(cfg=None, runner=None):
    """The data of this experiment (see the module docstring)."""
    cfg = cfg or config.make_config()
    return analyze(cfg, (runner or Runner()).map(specs(cfg), desc=NAME))
