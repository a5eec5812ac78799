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
# # The BatchNorm backward, on one page
#
# The derivation in the docstring of `refnet/ops/batchnorm.py`, typeset, one step at a
# time, each step with the NumPy line that computes it and a check that runs beside it.
# **By the end you can** derive BatchNorm's training-mode backward from the chain rule,
# collapse it to the one line refnet uses, say why the paths through the batch mean and
# the batch variance cannot be dropped (and what that has to do with scale invariance),
# and check all of it numerically.
#
# Every check below is asserted, so running this page is its test
# (`tests/test_docs.py` runs it as a script).

# %%
import numpy as np

from refnet.gradcheck import check_op
from refnet.ops import (batchnorm_backward, batchnorm_eval_backward, batchnorm_eval_forward,
                        batchnorm_forward)

rng = np.random.default_rng(17)
N, C, H, W = 4, 3, 5, 5                     # each channel is normalized over m = N*H*W values
x = rng.standard_normal((N, C, H, W)) * 2 + 0.5
gamma, beta = rng.standard_normal(C), rng.standard_normal(C)
dy = rng.standard_normal(x.shape)           # the gradient arriving from the layer above
eps = 1e-5
axes = (0, 2, 3)                            # every axis but the channel axis 1
m = x.size // C


def per_channel(a):
    """(C,) -> (1, C, 1, 1): broadcasts along the channel axis only."""
    return a.reshape(1, C, 1, 1)


# %% [markdown]
# ## 1. Forward
#
# For one channel, with its $m$ values $x_1, \dots, x_m$ (all of its entries over the batch
# and the spatial positions):
#
# | step | math | NumPy |
# |---|---|---|
# | mean | $\mu = \frac{1}{m} \sum_i x_i$ | `mu = x.mean(axes)` |
# | variance (biased) | $\sigma^2 = \frac{1}{m} \sum_i (x_i - \mu)^2$ | `var = ((x - mu)**2).mean(axes)` |
# | inverse std | $s = 1 / \sqrt{\sigma^2 + \epsilon}$ | `s = 1 / np.sqrt(var + eps)` |
# | normalized | $\hat x_i = (x_i - \mu)\, s$ | `xhat = (x - mu) * s` |
# | output | $y_i = \gamma \hat x_i + \beta$ | `y = gamma * xhat + beta` |
#
# Check: the same numbers as refnet's `batchnorm_forward`.

# %%
mu = x.mean(axes)
var = ((x - per_channel(mu)) ** 2).mean(axes)
s = 1 / np.sqrt(var + eps)
xhat = (x - per_channel(mu)) * per_channel(s)
y = per_channel(gamma) * xhat + per_channel(beta)

y_refnet, cache = batchnorm_forward(x, gamma, beta, eps=eps)
forward_diff = np.abs(y - y_refnet).max()
print(f"forward, by hand vs refnet: max abs difference {forward_diff:.1e}")
assert forward_diff < 1e-12

# %% [markdown]
# ## 2. Backward, one path at a time
#
# $x_i$ reaches the loss along three paths: directly through $\hat x_i$, through the mean
# $\mu$ and through the variance $\sigma^2$ (both depend on every $x_j$ of the channel). Write
# $dv = \partial L / \partial v$ for every quantity $v$, start from $dy$ and walk the forward
# backwards. With $d\hat x_i = \gamma\, dy_i$:
#
# $$
# \begin{aligned}
# d\beta &= \sum_i dy_i, \qquad d\gamma = \sum_i dy_i\, \hat x_i \\
# d\sigma^2 &= \sum_i d\hat x_i\, (x_i - \mu) \cdot \big(-\tfrac{1}{2}\big) s^3 \\
# d\mu &= -s \sum_i d\hat x_i \;+\; d\sigma^2 \cdot \big(-\tfrac{2}{m}\big) \sum_i (x_i - \mu)
#   && \text{(the last sum is 0)} \\
# dx_i &= s\, d\hat x_i \;+\; d\sigma^2\, \frac{2 (x_i - \mu)}{m} \;+\; \frac{d\mu}{m}
# \end{aligned}
# $$
#
# | line | where it comes from | NumPy |
# |---|---|---|
# | $d\sigma^2$ | $\partial \hat x_i / \partial \sigma^2 = (x_i - \mu) \cdot (-\frac{1}{2}) (\sigma^2 + \epsilon)^{-3/2}$ | `dvar = (dxhat * xc).sum(axes) * -0.5 * s**3` |
# | $d\mu$ | $\partial \hat x_i / \partial \mu = -s$, and $\partial \sigma^2 / \partial \mu = -\frac{2}{m} \sum_i (x_i - \mu)$ | `dmu = -s * dxhat.sum(axes)` |
# | $dx_i$ | $\partial \hat x_i / \partial x_i = s$, $\partial \sigma^2 / \partial x_i = \frac{2}{m} (x_i - \mu)$, $\partial \mu / \partial x_i = \frac{1}{m}$ | `dx = s * dxhat + dvar * 2 * xc / m + dmu / m` |
#
# Check: the staged backward against central differences (`check_op`, float64; it fails
# when one entry of one gradient is off by more than its stated tolerance); first $d\sigma^2$
# and $d\mu$ on their own, each as the gradient of the output with respect to that one
# quantity ($\sigma^2$ with $x$ and $\mu$ held; $\mu$ with $x$ held, directly and through
# $\sigma^2(\mu) = \frac{1}{m} \sum_i (x_i - \mu)^2$, also away from the batch mean where the
# last sum is not 0), then $dx$, $d\gamma$, $d\beta$ together.

# %%
def stats_backward(dxhat, xc, s):
    """dvar and dmu of the table above, from dxhat and xc = x - mu."""
    dvar = (dxhat * xc).sum(axes) * -0.5 * s ** 3
    dmu = -s * dxhat.sum(axes) + dvar * (-2 / m) * xc.sum(axes)   # the last sum is 0 at the batch mean
    return dvar, dmu


def output_from_var(var):                  # x and mu held: only the path through sigma^2
    xc = x - per_channel(mu)
    s = 1 / np.sqrt(var + eps)
    return per_channel(gamma * s) * xc + per_channel(beta), (xc, s)


def output_from_mean(mu):                  # x held: directly and through sigma^2(mu)
    xc = x - per_channel(mu)
    s = 1 / np.sqrt((xc ** 2).mean(axes) + eps)
    return per_channel(gamma * s) * xc + per_channel(beta), (xc, s)


def dvar_backward(dy, cache):
    return (stats_backward(per_channel(gamma) * dy, *cache)[0],)


def dmu_backward(dy, cache):
    return (stats_backward(per_channel(gamma) * dy, *cache)[1],)


stat_reports = {"dvar": check_op(output_from_var, dvar_backward, (var,)),
                "dmu at the batch mean": check_op(output_from_mean, dmu_backward, (mu,)),
                "dmu at mean + 0.3": check_op(output_from_mean, dmu_backward, (mu + 0.3,))}
for name, report in stat_reports.items():
    print(f"{name:22s} max rel err {report.max_rel_err:.1e}  {'ok' if report.ok else 'FAILED'}")
    assert report.ok


def staged_forward(x, gamma, beta):
    mu = x.mean(axes)
    xc = x - per_channel(mu)
    s = 1 / np.sqrt((xc ** 2).mean(axes) + eps)
    xhat = xc * per_channel(s)
    return per_channel(gamma) * xhat + per_channel(beta), (xc, s, xhat, gamma)


def staged_backward(dy, cache):
    xc, s, xhat, gamma = cache
    dbeta = dy.sum(axes)
    dgamma = (dy * xhat).sum(axes)
    dxhat = per_channel(gamma) * dy
    dvar, dmu = stats_backward(dxhat, xc, s)
    dx = per_channel(s) * dxhat + per_channel(dvar) * 2 * xc / m + per_channel(dmu) / m
    return dx, dgamma, dbeta


staged_report = check_op(staged_forward, staged_backward, (x, gamma, beta))
print(staged_report)
assert staged_report.ok

# %% [markdown]
# ## 3. The one line refnet uses
#
# Substitute $x_i - \mu = \hat x_i / s$ into each term.
#
# * The variance: $\sum_i d\hat x_i (x_i - \mu) = \gamma \sum_i dy_i \hat x_i / s = \gamma\, d\gamma / s$, so
#   $d\sigma^2 = -\tfrac{1}{2} s^2 \gamma\, d\gamma$, and its term in $dx_i$ is
#   $d\sigma^2 \cdot 2 \hat x_i / (s m) = -s \gamma\, \hat x_i\, d\gamma / m$.
# * The mean: $d\mu = -s \sum_i d\hat x_i = -s \gamma\, d\beta$, and its term is $-s \gamma\, d\beta / m$.
# * The direct path: $s\, d\hat x_i = s \gamma\, dy_i$.
#
# Collecting the three:
#
# $$
# dx_i = \frac{\gamma s}{m} \big( m\, dy_i - d\beta - \hat x_i\, d\gamma \big)
# $$
#
# Check: the compact form, the staged one and refnet's `batchnorm_backward` agree to rounding.

# %%
dbeta = dy.sum(axes)
dgamma = (dy * xhat).sum(axes)
dx_compact = per_channel(gamma * s / m) * (m * dy - per_channel(dbeta) - xhat * per_channel(dgamma))
dx_staged = staged_backward(dy, staged_forward(x, gamma, beta)[1])[0]
dx_refnet, dgamma_refnet, dbeta_refnet = batchnorm_backward(dy, cache)
scale = np.abs(dx_refnet).max()
compact_vs_staged = np.abs(dx_compact - dx_staged).max() / scale
compact_vs_refnet = np.abs(dx_compact - dx_refnet).max() / scale
print(f"compact vs staged:  max relative difference {compact_vs_staged:.1e}")
print(f"compact vs refnet:  max relative difference {compact_vs_refnet:.1e}")
assert compact_vs_staged < 1e-12 and compact_vs_refnet < 1e-12
assert np.allclose(dgamma, dgamma_refnet, rtol=1e-12) and np.allclose(dbeta, dbeta_refnet, rtol=1e-12)

# %% [markdown]
# ## 4. Why neither path can be dropped
#
# Sum the compact form over the channel. Since $\sum_i \hat x_i = 0$ and
# $\sum_i \hat x_i^2 = m \sigma^2 s^2 = m \sigma^2 / (\sigma^2 + \epsilon)$:
#
# $$
# \sum_i dx_i = \frac{\gamma s}{m} \Big( m\, d\beta - m\, d\beta - d\gamma \sum_i \hat x_i \Big) = 0,
# \qquad
# \sum_i dx_i\, \hat x_i = \gamma s\, d\gamma\, \frac{\epsilon}{\sigma^2 + \epsilon}.
# $$
#
# The first says the loss ignores a common shift of a channel's inputs (the mean removes
# it); the $-d\beta$ term, which comes from the mean's path, is what makes it so. The
# second says the loss ignores a common *scale* of the channel's inputs, exactly when
# $\epsilon = 0$: the $-\hat x_i\, d\gamma$ term, from the variance's path, makes $dx$
# orthogonal to $\hat x$. That is the scale invariance this whole project studies
# ($\langle w, \nabla_w L \rangle = 0$ for a weight feeding BatchNorm), and $\epsilon$ is where it bends.
#
# Check both sums, and what they become when a path is dropped.

# %%
def without_mean_path(dy, cache):
    xc, s, xhat, gamma = cache
    dx, dgamma, dbeta = staged_backward(dy, cache)
    return dx + per_channel(gamma * s * dbeta) / m, dgamma, dbeta             # the -dbeta term removed


def without_variance_path(dy, cache):
    xc, s, xhat, gamma = cache
    dx, dgamma, dbeta = staged_backward(dy, cache)
    return dx + per_channel(gamma * s * dgamma) * xhat / m, dgamma, dbeta     # the -xhat dgamma term removed


shift = np.abs(dx_refnet.sum(axes)).max()
euler = (dx_refnet * xhat).sum(axes)
euler_law = gamma * s * dgamma * eps / (var + eps)
print(f"sum_i dx_i:          {shift:.1e} (0 to rounding)")
print(f"sum_i dx_i xhat_i:   {np.abs(euler).max():.2e}, law {np.abs(euler_law).max():.2e}")
staged_cache = staged_forward(x, gamma, beta)[1]
broken_shift = np.abs(without_mean_path(dy, staged_cache)[0].sum(axes)).max()
broken_euler = np.abs((without_variance_path(dy, staged_cache)[0] * xhat).sum(axes)).max()
print(f"without the mean path:     sum_i dx_i = {broken_shift:.2f}")
print(f"without the variance path: sum_i dx_i xhat_i = {broken_euler:.2f}")
assert shift < 1e-12 * scale * m
assert np.allclose(euler, euler_law, rtol=1e-6, atol=1e-14)
assert broken_shift > 1e-3 and broken_euler > 1e-3

# %% [markdown]
# The gradient checker sees both mistakes, and blames $x$ alone ($d\gamma$ and $d\beta$ never go
# through $\mu$ or $\sigma^2$): a check that says `ok` above says `FAILED` here.

# %%
mean_report = check_op(staged_forward, without_mean_path, (x, gamma, beta))
variance_report = check_op(staged_forward, without_variance_path, (x, gamma, beta))
print(mean_report)
print(variance_report)
for report in (mean_report, variance_report):
    assert not report.ok and report.errors["x"].max_rel_err > 1e-2
    assert report.errors["gamma"].ok and report.errors["beta"].ok

# %% [markdown]
# ## 5. How the code computes it
#
# refnet's forward keeps $x$ itself (or, where $\mu^2 > \sigma^2$ would cost digits, the centred
# $x - \mu$) as $x_c$, with a per-channel shift $c$ ($c = \mu$, or 0) such that
# $\hat x = (x_c - c)\, s$, and never stores $\hat x$. The backward folds every per-channel factor
# before it touches a big array:
#
# $$
# d\gamma = s \Big( \sum_i dy_i\, x_{c,i} - c\, d\beta \Big), \qquad
# dx = k\, (x_c\, a + dy + b), \qquad k = \gamma s,\quad a = -\frac{s\, d\gamma}{m},\quad b = -\frac{d\beta}{m} - c\, a.
# $$
#
# Expanding, $k (x_c a + dy + b) = \gamma s \big(dy - d\beta/m - (x_c - c)\, s\, d\gamma/m\big)$,
# which is the compact form with $\hat x = (x_c - c)\, s$. Check: the folded form from the
# cache refnet keeps, on both of its branches: $x$ itself (here $\mu^2 \le \sigma^2$ in every
# channel, so $x_c = x$, $c = \mu$) and $x + 10$ ($\mu^2 > \sigma^2$: $x_c = x - \mu$, $c = 0$),
# against the compact form computed from the two-pass $\hat x$.

# %%
def compact_backward(x_in, dy):
    """dx and dgamma by the compact form, from the two-pass statistics of x_in."""
    xc = x_in - per_channel(x_in.mean(axes))
    s = 1 / np.sqrt((xc ** 2).mean(axes) + eps)
    xhat = xc * per_channel(s)
    dbeta, dgamma = dy.sum(axes), (dy * xhat).sum(axes)
    return per_channel(gamma * s / m) * (m * dy - per_channel(dbeta) - xhat * per_channel(dgamma)), dgamma


def folded_backward(dy, cache):
    """dx and dgamma folded as refnet folds them, from refnet's cache."""
    xc_cached, c_shift, s = cache["xc"], cache["shift"], cache["inv_std"]
    dbeta = dy.sum(axes)
    dgamma_folded = s * ((dy * xc_cached).sum(axes) - c_shift * dbeta)
    k, a = gamma * s, -s * dgamma_folded / m
    b = -dbeta / m - c_shift * a
    return per_channel(k) * (xc_cached * per_channel(a) + dy + per_channel(b)), dgamma_folded


for name, x_in in (("x", x), ("x + 10", x + 10)):
    cache_in = batchnorm_forward(x_in, gamma, beta, eps=eps)[1]
    centred = not np.shares_memory(cache_in["xc"], x_in)
    assert centred == (name == "x + 10")                  # the branch this input is meant to take
    c_want = np.zeros(C) if centred else x_in.mean(axes)  # refnet sums in another order:
    assert np.allclose(cache_in["shift"], c_want, rtol=1e-13, atol=1e-15)   # equal to rounding
    dx_folded, dgamma_folded = folded_backward(dy, cache_in)
    dx_expected, dgamma_expected = compact_backward(x_in, dy)
    folded_diff = np.abs(dx_folded - dx_expected).max() / np.abs(dx_expected).max()
    branch = "x_c = x - mu, c = 0" if centred else "x_c = x, c = mu"
    print(f"{name:7s} ({branch:19s}) folded vs compact: max relative difference {folded_diff:.1e}")
    assert folded_diff < 1e-12 and np.allclose(dgamma_folded, dgamma_expected, rtol=1e-12)

# %% [markdown]
# ## 6. Eval mode
#
# With given running statistics (`batchnorm_eval_forward`), $\mu$ and $\sigma^2$ are inputs,
# not functions of the batch: $y$ is affine in $x$ per channel and every path is one step:
#
# $$
# dx = \gamma s\, dy, \quad d\gamma = \sum_i dy_i\, \hat x_i, \quad d\beta = \sum_i dy_i, \quad
# d\mu = -\gamma s\, d\beta, \quad d\sigma^2 = -\tfrac{1}{2} \gamma s^2\, d\gamma.
# $$
#
# Check: `check_op` on the eval op, whose report covers all five arguments.

# %%
running_mean, running_var = rng.standard_normal(C), rng.uniform(0.5, 2.0, C)
eval_report = check_op(batchnorm_eval_forward, batchnorm_eval_backward,
                       (x, gamma, beta, running_mean, running_var))
print(eval_report)
assert eval_report.ok

# %% [markdown]
# ## What we found

# %%
print(f"staged backward vs central differences: max rel err {staged_report.max_rel_err:.1e}")
print(f"compact = staged = refnet to            {max(compact_vs_staged, compact_vs_refnet):.1e}")
print(f"sum_i dx_i = {shift:.1e}; without the mean path {broken_shift:.2f}")
print(f"without the mean path, the check on x:     {mean_report.errors['x'].max_rel_err:.2f} (FAILED)")
print(f"without the variance path, the check on x: {variance_report.errors['x'].max_rel_err:.2f} (FAILED)")
assert staged_report.max_rel_err < 1e-6 and eval_report.max_rel_err < 1e-6
