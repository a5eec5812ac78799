# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 3. The effective learning rate
#
# **By the end you can** derive, for SGD with L2 on a scale-invariant weight, the exact
# norm recursion, the steady norm, the steady angle per step and the effective learning
# rate; train a BatchNorm network on Fashion-MNIST with refnet's `Trainer` and read those
# quantities per layer from its `History`; lay the closed forms of `theory` over them; and
# explain why every layer ends up turning at the same rate.
#
# One training run of 1500 steps: about 10-20 s on two CPU cores.

# %%
import matplotlib.pyplot as plt
import numpy as np

import theory
from refnet.data import load_dataset
from refnet.invariance import angular_update
from refnet.nn import Parameter
from refnet.nn.models import mlp, trainable_parameters
from refnet.optim import SGD
from refnet.train import Trainer

# %% [markdown]
# ## Derivation
#
# Tutorial 2 gave, for one scale group $w$ (one unit of a BatchNorm layer), $\langle w, g \rangle = 0$
# and $g = \tilde g / \lVert w \rVert$, where $\tilde g$ is the gradient at the unit point $w / \lVert w \rVert$. SGD with
# learning rate $\eta$ (`lr`) and the paper's L2 (loss $+ \lambda \lVert w \rVert^2$, refnet's `l2=lam`) takes the step
#
# $$
# w' = w - \eta (g + 2 \lambda w) = q w - \eta g, \qquad q = 1 - 2 \eta \lambda.
# $$
#
# **Norm (exact).** $g$ is orthogonal to $w$, so by Pythagoras, with $x = \lVert w \rVert^2$:
#
# $$
# x' = q^2 x + \eta^2 \lVert g \rVert^2 = q^2 x + \eta^2 \lVert \tilde g \rVert^2 / x. \tag{identity 4}
# $$
#
# L2 shrinks the norm by $q^2$; the gradient noise grows it, by less the larger it already is.
#
# **Steady state.** With $G_2 = \mathbb{E} \lVert \tilde g \rVert^2$ set $x' = x$: $x^2 (1 - q^2) = \eta^2 G_2$, i.e.
#
# $$
# \lVert w \rVert^4 = \frac{\eta G_2}{4 \lambda (1 - \eta \lambda)}.
# $$
#
# **Angle.** $\cos\theta = \langle w, w' \rangle / (\lVert w \rVert \lVert w' \rVert) = q x / \sqrt{x x'}$, and at the steady
# state ($x' = x$)
#
# $$
# \cos\theta = 1 - 2 \eta \lambda \qquad (\theta \approx 2 \sqrt{\eta \lambda})
# $$
#
# which contains neither $G_2$ nor the layer's size: **every layer turns at the same rate**,
# set by $\eta \lambda$ alone.
#
# **Effective learning rate.** The direction moves as if by SGD on the unit sphere with
# rate $\eta / \lVert w \rVert^2$, which at the steady state is $2 \sqrt{\eta \lambda (1 - \eta \lambda) / G_2}$.
# It does depend on $G_2$, so it differs between layers while their angles agree.
#
# **Tracking a drifting $G_2$.** Square identity 4 and drop the $\eta^4$ term: $y = \lVert w \rVert^4$
# obeys $y' = q^4 y + 2 q^2 \eta^2 \lVert \tilde g \rVert^2$, an exponential moving average with rate
# $1 - q^4 \approx 8 \eta \lambda$ per step. So $\lVert w \rVert^4$ relaxes to the law in about
# $1 / (8 \eta \lambda)$ steps, and on real data, where $G_2$ drifts as the network learns,
# it follows the law evaluated at an EMA of $\lVert \tilde g \rVert^2$ with that rate.

# %% [markdown]
# ## Train
#
# `mlp(784, norm="bn")`: Flatten, Linear(784, 256)-BN-ReLU, Linear(256, 256)-BN-ReLU,
# Linear(256, 10). `1.weight` and `4.weight` feed BatchNorms: 256 scale groups each (their
# rows). SGD with `lr = 0.2, l2 = 0.01` ($\eta \lambda = 2 \cdot 10^{-3}$: the norm relaxes in about 60
# steps, so 1500 steps are plenty), batch 128, all 60 000 training images.
#
# `Trainer` records, every `log_every` steps and per scale group, `norm` (before the step),
# `effective_lr`, `angle` (between before and after the step) and `grad_norm_unit`
# ($\lVert w \rVert \lVert g \rVert$, i.e. $\lVert \tilde g \rVert$, measured without the L2 term): arrays of shape
# `(steps, 256)` in `history.steps`.

# %%
lr, lam, steps = 0.2, 1e-2, 1500
data = load_dataset("fashion-mnist", test_subset=2000, seed=0)
model = mlp(784, width=256, depth=2, norm="bn", rng=1)
optimizer = SGD(trainable_parameters(model), lr=lr, l2=lam)
history = Trainer(model, optimizer, data, batch_size=128, steps=steps, seed=1, progress=False).fit()
print(data)
print(f"test accuracy after {steps} steps: {history.final['test_accuracy']:.3f}")
layers = ("1.weight", "4.weight")
s = history.steps
print({k: v.shape for k, v in s.items() if k.endswith("1.weight")})

# %% [markdown]
# ## Check: identity 4, step by step
#
# The recorded norms must obey $x_{t+1} = q^2 x_t + \eta^2 \lVert \tilde g_t \rVert^2 / x_t$ at every step,
# not just on average. It holds to float32 rounding while the norm is large; it drifts
# by $\epsilon / \mathrm{var}$ (BatchNorm's `eps`, tutorial 2) once the norm has shrunk.

# %%
q = 1 - 2 * lr * lam
identity4 = {}
for name in layers:
    x = s[f"norm/{name}"].astype(np.float64) ** 2
    g2 = s[f"grad_norm_unit/{name}"].astype(np.float64) ** 2
    predicted_next = q * q * x[:-1] + lr * lr * g2[:-1] / x[:-1]
    err = np.abs(x[1:] / predicted_next - 1)
    identity4[name] = (err[:100].max(), err.max())
    print(f"{name}: identity 4, max relative error over the first 100 steps {err[:100].max():.1e}, "
          f"over all {err.max():.1e}")
assert all(first < 1e-4 for first, _ in identity4.values())

# %% [markdown]
# ## Measure: the norm, the effective lr and the angle against the laws
#
# Per unit: the EMA of $\lVert \tilde g \rVert^2$ at rate $1 - q^4$, the laws evaluated at it; then the
# median over the 256 units of each layer at every step.

# %%
rate = 1 - q ** 4
predicted, measured = {}, {}
for name in layers:
    g2 = s[f"grad_norm_unit/{name}"].astype(np.float64) ** 2
    G2 = np.empty_like(g2)
    G2[0] = g2[0]
    for t in range(1, len(g2)):
        G2[t] = (1 - rate) * G2[t - 1] + rate * g2[t]
    predicted[name] = {"norm": (lr * G2 / (4 * lam * (1 - lr * lam))) ** 0.25,
                       "effective_lr": 2 * np.sqrt(lr * lam * (1 - lr * lam) / G2),
                       "angle": np.full(G2.shape, np.arccos(q))}
    measured[name] = {k: s[f"{k}/{name}"].astype(np.float64) for k in ("norm", "effective_lr", "angle")}

def rms_per_step(angle, window=25):
    """RMS over units, then over a sliding window of steps (one step's angles are noisy)."""
    mean_sq = (angle ** 2).mean(axis=1)
    return np.sqrt(np.convolve(mean_sq, np.ones(window) / window, mode="valid"))


fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
for ax, k in zip(axes, ("norm", "effective_lr", "angle")):
    for name, color in zip(layers, ("C0", "C1")):
        if k == "angle":
            ax.plot(np.arange(12, steps - 12), rms_per_step(measured[name][k]), color=color, lw=1,
                    label=f"{name} measured")
        else:
            ax.plot(np.median(measured[name][k], axis=1), color=color, lw=1, label=f"{name} measured")
        ax.plot(np.median(predicted[name][k], axis=1), color=color, ls="--", lw=1.5, label=f"{name} law")
    what = "RMS over units and 25 steps" if k == "angle" else "median over units"
    ax.set(xlabel="step", title=f"{k} ({what})", yscale="log" if k != "angle" else "linear")
axes[2].set_ylim(0, 0.12)
axes[0].legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# The laws (dashed) use the running $G_2$, so they hold only once the norm has relaxed: after
# ~500 steps the measured curves sit on them. Over the second half,
# per unit: the mean of $\lVert w \rVert^4$ against the mean of the law, the RMS angle against
# $\arccos(1 - 2 \eta \lambda)$; then the median over units of the relative deviation.

# %%
late = slice(steps // 2, None)
deviation = {}
for name in layers:
    m, p = measured[name], predicted[name]
    norm4 = np.median((m["norm"][late] ** 4).mean(0) / (p["norm"][late] ** 4).mean(0)) - 1
    angle = np.median(np.sqrt((m["angle"][late] ** 2).mean(0)) / np.arccos(q)) - 1
    eff = np.median(m["effective_lr"][late].mean(0) / p["effective_lr"][late].mean(0)) - 1
    deviation[name] = {"norm^4": norm4, "angle": angle, "effective_lr": eff}
    print(f"{name}: ||w||^4 {norm4:+.2%}, angle {angle:+.2%}, effective lr {eff:+.2%} from the laws; "
          f"effective lr {np.median(m['effective_lr'][late]):.2f}, "
          f"RMS angle {np.sqrt(np.mean(m['angle'][late] ** 2)):.4f} rad")
print(f"law: angle arccos(1 - 2 lr lam) = {np.arccos(q):.4f} rad for every layer")

# %% [markdown]
# The two layers have effective learning rates a factor ~3 apart (their $G_2$ differ) but
# turn by the same angle per step, the one $\eta \lambda$ sets. The same numbers come out of
# `theory`'s closed form, unit by unit (exact form, static $G_2$ over the window):

# %%
unit = 0
G2_unit = float(np.mean(s["grad_norm_unit/1.weight"][late, unit].astype(np.float64) ** 2))
eq = theory.sgd_l2_equilibrium(lr, lam, G2_unit)
print(eq)
rms_norm = np.sqrt(np.mean(measured["1.weight"]["norm"][late, unit] ** 2))
print(f"unit {unit} of 1.weight: measured RMS norm {rms_norm:.4f}, law {eq.norm:.4f}; "
      f"relaxation time {eq.relaxation_time:.0f} steps")
assert abs(eq.angle - np.arccos(q)) < 1e-12

# %% [markdown]
# `refnet.dynamics.compare(history)` does all of this for any of refnet's optimizers
# (it reads the optimizer and its options from the History, picks the law, relaxes $G_2$ the
# same way): its medians should match ours.

# %%
from refnet.dynamics import compare  # noqa: E402  (introduced here, where it is needed)

library = compare(history)["params"]
for name in layers:
    med = library[name]["median"]["rel_error"]
    print(f"{name} ({library[name]['law']}): ||w||^4 {med['norm_power']:+.2%}, angle {med['angle']:+.2%}, "
          f"effective lr {med['effective_lr']:+.2%}")
assert all(abs(library[n]["median"]["rel_error"]["norm_power"] - deviation[n]["norm^4"]) < 0.01 for n in layers)

# %% [markdown]
# ## Exercises
#
# Reference solutions: `tutorials/solutions.py`.
#
# ### Exercise 1: the angle from two snapshots
#
# Write `my_angle(w_before, w_after)`: the angle per row (one per output unit). The
# obvious $\arccos(\langle a, b \rangle / (\lVert a \rVert \lVert b \rVert))$ loses every digit for the tiny angles late training
# produces ($\cos$ of $10^{-8}$ rad is 1 in float64); find a form that does not.
# `exercise_1()` compares it with `refnet.invariance.angular_update` down to 1e-9 rad.

# %%
def my_angle(w_before, w_after):
    raise NotImplementedError("exercise 1: the angle between w_before[i] and w_after[i], per row i")


def _attempt(check):
    try:
        return check()
    except NotImplementedError as e:
        print(f"not attempted yet: {e}")
        return False


def exercise_1(angle=None):
    """Your angle against refnet's angular_update, for angles from 1 rad down to 1e-9 rad."""
    angle = angle or my_angle

    def check():
        r = np.random.default_rng(41)
        w = r.standard_normal((6, 50))
        ok = True
        for size in (1.0, 1e-3, 1e-6, 1e-9):
            turn = r.standard_normal((6, 50))
            turn -= (turn * w).sum(1, keepdims=True) / (w * w).sum(1, keepdims=True) * w
            w_after = w + size * np.linalg.norm(w, axis=1, keepdims=True) * turn / np.linalg.norm(
                turn, axis=1, keepdims=True)
            ref, yours = angular_update(w, w_after), np.asarray(angle(w, w_after))
            err = np.abs(yours / ref - 1).max()
            print(f"angle ~{ref.mean():.1e} rad: max relative error {err:.1e}")
            ok = ok and yours.shape == ref.shape and err < 1e-6
        return bool(ok)
    return _attempt(check)


exercise_1()

# %% [markdown]
# ### Exercise 2: when the gradient vanishes
#
# If the training loss reaches zero, $g = 0$ and only L2 acts. Predict $\lVert w_t \rVert$ after $t$
# such steps from $\lVert w_0 \rVert$ (identity 4 with $g = 0$), and so what happens to the effective
# learning rate. Write `norm_after(t, norm0, lr, lam)`. `exercise_2()` runs refnet's SGD on a
# parameter whose gradient is kept at zero.

# %%
def norm_after(t, norm0, lr, lam):
    raise NotImplementedError("exercise 2: ||w_t|| after t SGD + L2 steps with zero gradient")


def exercise_2(predict=None):
    """refnet's SGD with zero gradient for 50 steps at three (lr, lam); compares ||w_t||."""
    predict = predict or norm_after

    def check():
        ok = True
        for lr_, lam_ in ((0.1, 1e-2), (0.5, 1e-3), (1.0, 0.05)):
            p = Parameter(np.random.default_rng(42).standard_normal((3, 4)))
            norm0 = float(np.linalg.norm(p.data))
            opt = SGD([p], lr=lr_, l2=lam_)
            for _ in range(50):
                opt.step()                      # p.grad stays zero: only L2 acts
            measured_norm = float(np.linalg.norm(p.data))
            guess = float(predict(50, norm0, lr_, lam_))
            print(f"lr={lr_}, lam={lam_}: ||w_50|| measured {measured_norm:.6e}, predicted {guess:.6e}, "
                  f"effective lr grew x{(norm0 / measured_norm) ** 2:.3g}")
            ok = ok and abs(guess / measured_norm - 1) < 1e-9
        return bool(ok)
    return _attempt(check)


exercise_2()

# %% [markdown]
# ### Exercise 3: momentum
#
# With heavy-ball momentum $\mu$ (`mu`; PyTorch's, no dampening) the steady angle becomes
# $\arccos(1 - 2 \eta \lambda / (1 + \mu))$ (theory/README.md, section 5). Write
# `predicted_momentum_angle(lr, lam, mu)`. `exercise_3()` compares it with
# `theory.sgd_momentum_l2_equilibrium` and with a 600-step run (SGD, momentum 0.9,
# `lr = 0.05, lam = 0.01`, a 64-wide BN network), median over units of the RMS angle over
# the last 300 steps.

# %%
def predicted_momentum_angle(lr, lam, mu):
    raise NotImplementedError("exercise 3: the steady angle per step with momentum mu")


def exercise_3(predict=None):
    """Your momentum angle law against theory's and against a short training run."""
    predict = predict or predicted_momentum_angle

    def check():
        lr_, lam_, mu = 0.05, 1e-2, 0.9
        guess = float(predict(lr_, lam_, mu))
        law = theory.sgd_momentum_l2_equilibrium(lr_, lam_, 1.0, mu).angle
        print(f"your law {guess:.5f} rad, theory {law:.5f} rad")
        if abs(guess / law - 1) > 1e-9:
            return False
        net = mlp(784, width=64, depth=2, norm="bn", rng=2)
        opt = SGD(trainable_parameters(net), lr=lr_, l2=lam_, momentum=mu)
        h = Trainer(net, opt, data, steps=600, seed=2, progress=False, eval_every_epoch=False).fit()
        rms = [np.median(np.sqrt((h.steps[f"angle/{n}"][300:].astype(np.float64) ** 2).mean(0)))
               for n in layers]
        print("measured RMS angle per layer:", ", ".join(f"{a:.5f}" for a in rms))
        return bool(all(abs(a / guess - 1) < 0.05 for a in rms))
    return _attempt(check)


exercise_3()

# %% [markdown]
# ## What we found

# %%
for name in layers:
    d = deviation[name]
    print(f"{name}: ||w||^4 {d['norm^4']:+.2%}, angle {d['angle']:+.2%}, "
          f"effective lr {d['effective_lr']:+.2%} from the laws")
assert all(abs(d["norm^4"]) < 0.03 and abs(d["angle"]) < 0.02 and abs(d["effective_lr"]) < 0.03
           for d in deviation.values())
eff_late = [np.median(measured[n]["effective_lr"][late]) for n in layers]
angle_late = [np.sqrt(np.mean(measured[n]["angle"][late] ** 2)) for n in layers]
print(f"effective lr ratio between the layers {eff_late[1] / eff_late[0]:.2f}, "
      f"angle ratio {angle_late[1] / angle_late[0]:.3f}")
assert eff_late[1] / eff_late[0] > 1.5 and abs(angle_late[1] / angle_late[0] - 1) < 0.02
assert history.final["test_accuracy"] > 0.8
