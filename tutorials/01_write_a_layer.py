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
# # 1. Write a layer, check its gradient
#
# **By the end you can** write a layer's forward and backward by hand, derive the
# backward on paper first, check it with `refnet.gradcheck`, read a failing report
# (which argument, which entry, how far off), and check a layer or module of your own.
#
# Plan: the linear layer (a two-line derivation), then BatchNorm's backward step by step,
# then two wrong backwards and what the checker says about them, then a module of your
# own. Runs in a few seconds on a laptop CPU.
#
# Every op in refnet has the same two functions:
#
# ```
# forward(x, w, ...)     -> (out, cache)     # cache: whatever backward needs
# backward(dout, cache)  -> (dx, dw, ...)    # one gradient per array argument of forward
# ```
#
# where `dout` $= \partial L / \partial\, \mathrm{out}$ comes from the layer above and `dx` $= \partial L / \partial x$ goes to the layer below.

# %%
import numpy as np

from refnet.gradcheck import check_module, check_op
from refnet.nn import BatchNorm1d, Linear, Module, Parameter, ReLU, Sequential
from refnet.ops import (batchnorm_backward, batchnorm_forward, layernorm_forward,
                        linear_backward, linear_forward)

rng = np.random.default_rng(2017)

# %% [markdown]
# ## The linear layer
#
# $y = x w^\top + b$ with $x$ (N, in), $w$ (out, in), $b$ (out,). Write one entry and
# differentiate it:
#
# $$
# y_{no} = \sum_i x_{ni} w_{oi} + b_o
# $$
#
# | entry by entry | in NumPy | shape |
# |---|---|---|
# | $\partial L / \partial x_{ni} = \sum_o dy_{no}\, w_{oi}$ | `dx = dy @ w` | (N, in) |
# | $\partial L / \partial w_{oi} = \sum_n dy_{no}\, x_{ni}$ | `dw = dy.T @ x` | (out, in) |
# | $\partial L / \partial b_o = \sum_n dy_{no}$ | `db = dy.sum(0)` | (out,) |
#
# A quick sanity check on a derivation: each gradient has the shape of what it is the
# gradient of. `dy @ w` is (N, out) @ (out, in) = (N, in), the shape of `x`.

# %%
def my_linear_forward(x, w, b):
    y = x @ w.T + b
    return y, (x, w)


def my_linear_backward(dy, cache):
    x, w = cache
    return dy @ w, dy.T @ x, dy.sum(axis=0)


x = rng.standard_normal((8, 5))
w = rng.standard_normal((3, 5))
b = rng.standard_normal(3)
report = check_op(my_linear_forward, my_linear_backward, (x, w, b))
print(report)
assert report.ok

# %% [markdown]
# How the check works (the docstring of `refnet.gradcheck` has the details): the op
# becomes one number $L = \sum \mathrm{dout} \odot \mathrm{forward}(x, w, b)$ with a *random* `dout`, and
# each entry of each argument is nudged by $\pm h$, $\pm 2h$ and $\pm 4h$; the extrapolated slope
# must equal what your backward says, $\langle \mathrm{grad}, e_j \rangle$, to a relative error of `rtol = 1e-5`.
# The same six evaluations measure how much rounding noise the slope carries, so the
# report also gives each argument's **resolution**: the smallest error in one entry the
# check could have seen. `ok` needs every entry covered and the resolution within
# `rtol`; when the noise is too large to tell, the status is `inconclusive`, not `ok`.
# Correct float64 backwards read about $10^{-8}$ or less. Always check in **float64**: in
# float32 the finite differences cannot tell a 0.1% error from rounding (the checker
# promotes other dtypes and warns).
#
# Our layer agrees with refnet's own:

# %%
y_ref, cache_ref = linear_forward(x, w, b)
dy_lin = rng.standard_normal(y_ref.shape)
mine = my_linear_backward(dy_lin, my_linear_forward(x, w, b)[1])
theirs = linear_backward(dy_lin, cache_ref)
assert np.allclose(my_linear_forward(x, w, b)[0], y_ref)
assert all(np.allclose(a, b_) for a, b_ in zip(mine, theirs))

# %% [markdown]
# ### What a wrong backward looks like: a transposed weight
#
# The classic slip is `dw = x.T @ dy` (shape (in, out)) instead of `dy.T @ x`. With a
# non-square weight the shapes disagree and the report says so before any arithmetic.
# Transposing the right answer to make the shape fit hides nothing either: with a square
# weight the shape is right and the *values* are wrong.

# %%
def transposed_linear_backward(dy, cache):
    x, w = cache
    return dy @ w, x.T @ dy, dy.sum(axis=0)          # BUG: (in, out), not (out, in)


def transposed_square_backward(dy, cache):
    x, w = cache
    return dy @ w, (dy.T @ x).T, dy.sum(axis=0)      # BUG: right shape only when square


shape_report = check_op(my_linear_forward, transposed_linear_backward, (x, w, b))
print(shape_report)
w_square = rng.standard_normal((5, 5))
value_report = check_op(my_linear_forward, transposed_square_backward,
                        (x, w_square, rng.standard_normal(5)))
print(value_report)

# %% [markdown]
# Read the second table row by row: `x` and `b` are fine (`ok`, relative errors around
# 1e-9, resolution far below `rtol`); `w` has `failed` with a relative error of order 1
# (not 1e-3: this is not a rounding problem, the formula is wrong), and `at` names the
# entry where the disagreement is largest. A relative error near 1 on one argument only means: look at
# that argument's formula. In the first table the shape note says the same before any
# number was computed.

# %%
assert not shape_report.ok and not value_report.ok
assert shape_report.errors["x"].ok and shape_report.errors["b"].ok
assert "expected shape (3, 5)" in shape_report.errors["w"].note
assert value_report.errors["w"].max_rel_err > 0.1
assert value_report.errors["x"].max_rel_err < 1e-6

# %% [markdown]
# ## BatchNorm's backward, step by step
#
# Batch normalization of a (N, C) input, per channel, over the batch ($m = N$ values):
#
# $$
# \begin{aligned}
# \mu &= \tfrac{1}{m} \textstyle\sum_i x_i & x_c &= x - \mu \\
# \mathrm{var} &= \tfrac{1}{m} \textstyle\sum_i x_{c,i}^2 & s &= 1 / \sqrt{\mathrm{var} + \epsilon} \\
# \hat x &= x_c\, s & y &= \gamma \hat x + \beta
# \end{aligned}
# $$
#
# Backward goes through the same graph in reverse. Each node adds its contribution to
# the gradient of every input it used; $\mu$ and $\mathrm{var}$ are functions of the *whole*
# batch, so every $dx_i$ depends on every $dy_j$ (each line is one line of the code below):
#
# $$
# \begin{aligned}
# d\beta &= \textstyle\sum_i dy_i, \qquad d\gamma = \textstyle\sum_i dy_i\, \hat x_i \\
# d\hat x &= \gamma\, dy \\
# dx_c &= s\, d\hat x && (\text{path } \hat x = x_c s) \\
# ds &= \textstyle\sum_i d\hat x_i\, x_{c,i} && (\text{path } \hat x = x_c s) \\
# d\mathrm{var} &= -\tfrac{1}{2} s^3\, ds && (s = (\mathrm{var} + \epsilon)^{-1/2}) \\
# dx_c &\mathrel{+}= \tfrac{2}{m}\, x_c\, d\mathrm{var} && (\mathrm{var} = \operatorname{mean}(x_c^2)) \\
# d\mu &= -\textstyle\sum_i dx_{c,i} && (x_c = x - \mu) \\
# dx &= dx_c + d\mu / m && (\mu = \operatorname{mean}(x))
# \end{aligned}
# $$

# %%
def my_batchnorm_forward(x, gamma, beta, eps=1e-5):
    mu = x.mean(axis=0)
    xc = x - mu
    var = (xc ** 2).mean(axis=0)
    s = 1 / np.sqrt(var + eps)
    xhat = xc * s
    return gamma * xhat + beta, (xc, s, xhat, gamma)


def my_batchnorm_backward(dy, cache):
    xc, s, xhat, gamma = cache
    m = dy.shape[0]
    dbeta = dy.sum(axis=0)
    dgamma = (dy * xhat).sum(axis=0)
    dxhat = gamma * dy
    dxc = s * dxhat
    ds = (dxhat * xc).sum(axis=0)
    dvar = ds * -0.5 * s ** 3
    dxc = dxc + dvar * 2 * xc / m
    dmu = -dxc.sum(axis=0)
    dx = dxc + dmu / m
    return dx, dgamma, dbeta


xb = rng.standard_normal((16, 4)) * 3 + 1
gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
bn_report = check_op(my_batchnorm_forward, my_batchnorm_backward, (xb, gamma, beta))
print(bn_report)
assert bn_report.ok

# %% [markdown]
# Substituting $x_c = \hat x / s$ collapses the eight lines into the one refnet uses
# (`refnet/ops/batchnorm.py`; its docstring has the algebra):
#
# $$
# dx = \frac{\gamma s}{m} \big(m\, dy - d\beta - \hat x\, d\gamma\big)
# $$
#
# The two agree to rounding:

# %%
dy = rng.standard_normal(xb.shape)
dx_staged = my_batchnorm_backward(dy, my_batchnorm_forward(xb, gamma, beta)[1])[0]
dx_refnet = batchnorm_backward(dy, batchnorm_forward(xb, gamma, beta)[1])[0]
bn_agreement = np.abs(dx_staged - dx_refnet).max() / np.abs(dx_refnet).max()
print(f"staged vs compact backward: max relative difference {bn_agreement:.1e}")
assert bn_agreement < 1e-12

# %% [markdown]
# ### What a wrong backward looks like: the missing mean path
#
# Treat $\mu$ as a constant (forget the last line, $dx = dx_c + d\mu / m$) and the
# backward is wrong for $x$ and only for $x$; $d\gamma$ and $d\beta$ never go
# through $\mu$.

# %%
def no_mean_path_backward(dy, cache):
    xc, s, xhat, gamma = cache
    m = dy.shape[0]
    dbeta, dgamma = dy.sum(axis=0), (dy * xhat).sum(axis=0)
    dxhat = gamma * dy
    dvar = (dxhat * xc).sum(axis=0) * -0.5 * s ** 3
    dx = s * dxhat + dvar * 2 * xc / m               # BUG: no "+ dmu / m"
    return dx, dgamma, dbeta


no_mean_report = check_op(my_batchnorm_forward, no_mean_path_backward, (xb, gamma, beta))
print(no_mean_report)

# %% [markdown]
# The report blames `x` alone, with a relative error of order 1: a whole term is missing.
# There is also a test that needs no finite differences: the output ignores a common
# shift of a channel's inputs ($\mu$ removes it), so the true $dx$ must sum to zero over
# the batch, per channel. The staged backward does; the broken one does not.

# %%
dx_broken = no_mean_path_backward(dy, my_batchnorm_forward(xb, gamma, beta)[1])[0]
print("sum over the batch of dx, correct:", np.abs(dx_staged.sum(axis=0)).max())
print("sum over the batch of dx, broken: ", np.abs(dx_broken.sum(axis=0)).max())
assert not no_mean_report.ok
assert no_mean_report.errors["gamma"].ok and no_mean_report.errors["beta"].ok
assert no_mean_report.errors["x"].max_rel_err > 0.1
assert np.abs(dx_staged.sum(axis=0)).max() < 1e-12 < 1e-3 < np.abs(dx_broken.sum(axis=0)).max()

# %% [markdown]
# Likewise the output ignores a scale of each channel's inputs, so $dx$ is orthogonal
# to $\hat x$ per channel. That orthogonality is the scale invariance the rest of these
# tutorials are about: a weight feeding BatchNorm gets a gradient orthogonal to itself.
#
# ### One more: a backward that modifies its input
#
# A backward must not change `dout` or the cache in place (the layer below may still
# need them, and refnet's modules share buffers). The checker compares them byte for
# byte before and after and reports a *problem*, even when the numbers are right:

# %%
def in_place_relu_forward(x):
    return np.maximum(x, 0), x


def in_place_relu_backward(dy, cache):
    dy *= cache > 0                                   # BUG: writes into the caller's dy
    return dy


inplace_report = check_op(in_place_relu_forward, in_place_relu_backward, (x,))
print(inplace_report)
assert not inplace_report.ok and "backward modified dout" in inplace_report.problems

# %% [markdown]
# ## Check a layer of your own
#
# **An op** (a pair of functions): `check_op(forward, backward, args, kwargs)`. Every
# floating-point array in `args` is checked; a `None` argument must get a `None`
# gradient; integer arrays (labels) are not differentiated; keyword arguments
# (`stride`, `eps`) are passed through and not differentiated. Backward returns one
# gradient per positional argument, as a tuple (a one-input op such as ReLU may return
# the bare array). The report names each argument after forward's parameter names.
# (`refnet gradcheck` on the command line runs this check on every built-in op and
# module; `refnet gradcheck --list` names them.)
#
# **A module**: subclass `refnet.nn.Module`. Assign `Parameter`s as attributes (they are
# registered by name, as in PyTorch); `forward(x)` keeps what backward needs;
# `backward(dy)` returns `dx` and **adds** (`+=`) each parameter's gradient into
# `param.grad` (refnet's optimizers read `.grad`; `zero_grad()` clears it between
# steps). Take the array module from the input (`xp = backend.array_module(x)`) instead
# of calling `np.` directly and the same layer runs on the GPU under CuPy.
#
# Here is our linear op as a module, checked alone and inside a small network with
# refnet's BatchNorm and ReLU:

# %%
class MyLinear(Module):
    def __init__(self, in_features, out_features, rng):
        super().__init__()
        bound = 1 / np.sqrt(in_features)
        self.weight = Parameter(rng.uniform(-bound, bound, (out_features, in_features)))
        self.bias = Parameter(np.zeros(out_features), decay=False)

    def forward(self, x):
        y, self._cache = my_linear_forward(x, self.weight.data, self.bias.data)
        return y

    def backward(self, dy):
        dx, dw, db = my_linear_backward(dy, self._cache)
        self.weight.grad += dw
        self.bias.grad += db
        return dx


layer = MyLinear(5, 3, rng)
layer_report = check_module(layer, x)
print(layer_report)
net = Sequential(MyLinear(5, 6, rng), BatchNorm1d(6, dtype=np.float64), ReLU(), MyLinear(6, 2, rng))
net_report = check_module(net, x)
print(net_report)
assert layer_report.ok and net_report.ok

# %% [markdown]
# `check_module` checks `dx` and every parameter in the module's current mode (train:
# batch statistics), restores buffers such as BatchNorm's running mean after every
# evaluation, and leaves the module as it found it. It also runs your backward a second
# time without clearing `.grad` and checks that every gradient doubled, so it *can* tell
# `+=` from `=`: a backward that assigns is reported as a problem, and the status is
# `failed` even though every number is right:

# %%
class AssigningLinear(MyLinear):
    def backward(self, dy):
        dx, dw, db = my_linear_backward(dy, self._cache)
        self.weight.grad[...] = dw                    # BUG: = instead of +=
        self.bias.grad += db
        return dx


assign_report = check_module(AssigningLinear(5, 3, rng), x)
print(assign_report)
assert assign_report.status == "failed" and assign_report.errors["weight"].ok
assert assign_report.problems == ["backward did not accumulate into weight.grad (it must add, +=, not assign)"]

# %% [markdown]
# Two habits that catch the rest:
#
# * Check with more than one `seed=` (it draws the random `dout` and the probes) and make
#   the batch, the channel and the feature counts all different (here 8, 5 and 3): a
#   summed axis or a transpose then shows up as a shape error.
# * Keep the inputs away from the checker's own random stream. The default `dout` comes
#   from a private stream, `refnet.gradcheck.checker_rng(seed)`, not from
#   `np.random.default_rng(seed)`, so inputs drawn from `default_rng(0)` (as most code
#   draws them) cannot equal it; if `dout` equalled `x`, `dy.T @ x` would be symmetric and
#   a transposed `dw` would pass. This notebook draws its inputs with seed 2017.

# %% [markdown]
# ## Exercises
#
# Each exercise has a check you call; it prints the report and returns `True` once your
# code is right. Reference solutions: `tutorials/solutions.py` (try first!).
#
# ### Exercise 1: LayerNorm
#
# LayerNorm normalizes each *sample* over its features: the statistics of batch norm
# with the roles of the axes swapped ($x$ (N, D); $\gamma$, $\beta$ (D,)). Write its forward
# and backward (the mean and variance are now per row), then call `exercise_1()`.

# %%
def my_layernorm_forward(x, gamma, beta, eps=1e-5):
    raise NotImplementedError("exercise 1: write LayerNorm's forward")


def my_layernorm_backward(dy, cache):
    raise NotImplementedError("exercise 1: write LayerNorm's backward")


def _attempt(check):
    try:
        return check()
    except NotImplementedError as e:
        print(f"not attempted yet: {e}")
        return False


def exercise_1(forward=None, backward=None):
    """check_op on your LayerNorm, and its forward against refnet's ``layernorm_forward``."""
    forward, backward = forward or my_layernorm_forward, backward or my_layernorm_backward

    def check():
        x = np.random.default_rng(11).standard_normal((6, 7)) * 2 + 1
        g, b = np.random.default_rng(12).standard_normal((2, 7))
        report = check_op(forward, backward, (x, g, b))
        print(report)
        same = np.allclose(forward(x, g, b)[0], layernorm_forward(x, g, b)[0], rtol=1e-10, atol=1e-12)
        print("forward matches refnet.ops.layernorm_forward:", same)
        return bool(report.ok and same)
    return _attempt(check)


exercise_1()

# %% [markdown]
# ### Exercise 2: Leaky ReLU, and a kink
#
# $y = x$ where $x > 0$, $y = \mathrm{slope} \cdot x$ elsewhere (PyTorch's `negative_slope`,
# default 0.01). Write `my_leaky_relu_forward(x, negative_slope=0.01)` and its backward.
# The check feeds inputs with exact zeros: at a kink the two one-sided slopes differ, and
# the checker excludes that entry, lists it under `kinks`, and still judges every other.

# %%
def my_leaky_relu_forward(x, negative_slope=0.01):
    raise NotImplementedError("exercise 2: write Leaky ReLU's forward")


def my_leaky_relu_backward(dy, cache):
    raise NotImplementedError("exercise 2: write Leaky ReLU's backward")


def exercise_2(forward=None, backward=None):
    """check_op on your Leaky ReLU, for two slopes, with some inputs exactly at the kink."""
    forward, backward = forward or my_leaky_relu_forward, backward or my_leaky_relu_backward

    def check():
        x = np.random.default_rng(21).standard_normal((5, 6))
        x[0, :3] = 0.0
        ok = True
        for slope in (0.01, 0.3):
            report = check_op(forward, backward, (x,), {"negative_slope": slope})
            print(report)
            expected = np.where(x > 0, x, slope * x)
            ok = ok and report.ok and report.n_kinks > 0 and np.allclose(forward(x, slope)[0], expected)
        return bool(ok)
    return _attempt(check)


exercise_2()

# %% [markdown]
# ### Exercise 3: a module with a parameter
#
# Write `MyScale(num_features)`: $y = x \cdot \mathrm{weight}$ with one learnable factor per feature
# (`weight` (D,), initialized to ones, no L2: `decay=False`), as a `Module` with a
# `Parameter`. `exercise_3(MyScale)` builds one, randomizes the weight and runs
# `check_module` on it alone and between two `Linear`s.

# %%
class MyScale(Module):
    def __init__(self, num_features):
        super().__init__()
        raise NotImplementedError("exercise 3: write MyScale")


def exercise_3(cls=None):
    """check_module on ``cls(4)`` alone and inside Linear -> cls -> ReLU -> Linear."""
    cls = cls or MyScale

    def check():
        r = np.random.default_rng(31)
        scale = cls(4)
        names = [n for n, _ in scale.named_parameters()]
        if names != ["weight"] or scale.weight.decay:
            print(f"expected one parameter 'weight' with decay=False, got {names}")
            return False
        scale.weight.data[...] = r.uniform(0.5, 2.0, 4)
        x = r.standard_normal((6, 4))
        alone = check_module(scale, x)
        stack = Sequential(Linear(3, 4, rng=r, dtype=np.float64), cls(4), ReLU(),
                           Linear(4, 2, rng=r, dtype=np.float64))
        stacked = check_module(stack, r.standard_normal((6, 3)))
        print(alone)
        print(stacked)
        return bool(alone.ok and stacked.ok)
    return _attempt(check)


exercise_3()

# %% [markdown]
# ## What we found
#
# The numbers this notebook measured, asserted so that running it is its test:

# %%
print(f"correct linear backward:     max rel err {report.max_rel_err:.1e}")
print(f"transposed square dw:        max rel err {value_report.errors['w'].max_rel_err:.2f}")
print(f"staged BatchNorm backward:   max rel err {bn_report.max_rel_err:.1e}")
print(f"BatchNorm without mean path: max rel err {no_mean_report.errors['x'].max_rel_err:.2f}")
assert report.max_rel_err < 1e-6 and bn_report.max_rel_err < 1e-6
assert value_report.errors["w"].max_rel_err > 1e4 * report.max_rel_err
assert no_mean_report.errors["x"].max_rel_err > 1e4 * bn_report.max_rel_err
