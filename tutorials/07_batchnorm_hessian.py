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
# # 7. The BatchNorm Hessian
#
# **By the end you can** derive a Hessian-vector product of BatchNorm by hand (its forward
# JVP and the JVP of its backward), check it against finite differences with refnet's
# second-order checker, show that the checker catches a dropped term, state the two
# second-order identities of a scale-invariant weight, and watch on Fashion-MNIST how L2
# moves a layer to where its curvature is larger.
#
# Two training runs of 800 small steps and a few Lanczos runs: about 10-20 s on two CPU cores.

# %%
import matplotlib.pyplot as plt
import numpy as np

import theory.second_order as so
from refnet import ops
from refnet.data import load_dataset
from refnet.gradcheck import check_hvp
from refnet.nn.curvature import gradient, top_eigenvalues
from refnet.nn.models import mlp, trainable_parameters
from refnet.nn import BatchNorm1d, BatchNorm2d
from refnet.optim import SGD

rng = np.random.default_rng(0)

# %% [markdown]
# ## Forward mode: the tangent of BatchNorm's output
#
# Per channel, over its $m$ values (write $E$ for the mean over them):
# $\mu = E[x]$, $v = E[(x-\mu)^2]$, $s = (v + \epsilon)^{-1/2}$, $\hat x = (x - \mu)\,s$.
# Move $x$ along a tangent $t_x$ and differentiate each line (Pearlmutter's R-operator):
#
# $$t_\mu = E[t_x],\qquad t_v = 2E[(x-\mu)\,t_x] = \tfrac{2}{s}E[\hat x\, t_x],\qquad
# t_s = -\tfrac12 s^3 t_v = -s^2 E[\hat x\, t_x],$$
#
# $$t_{\hat x} = s\,(t_x - t_\mu) + (x - \mu)\,t_s = s\,\big(t_x - E[t_x] - \hat x\,E[\hat x\, t_x]\big).$$
#
# The tangent is $t_x$ with its mean and its component along $\hat x$ removed, times $s$: the
# same projection as the gradient $dx$, as it must be (the JVP is the transpose of the VJP).

# %%
x, tx = rng.standard_normal((8, 3)), rng.standard_normal((8, 3))
y, cache = ops.batchnorm_forward(x, None, None, eps=1e-5)
h = 1e-5
numerical = (ops.batchnorm_forward(x + h * tx, None, None, eps=1e-5)[0]
             - ops.batchnorm_forward(x - h * tx, None, None, eps=1e-5)[0]) / (2 * h)
print("refnet's batchnorm_forward_jvp vs central differences:",
      f"{np.abs(ops.batchnorm_forward_jvp(cache, tx) - numerical).max():.1e}")

# %% [markdown]
# ### Exercise 1: the forward JVP
#
# Write `bn_forward_jvp(x, tx, eps)`: the tangent of BatchNorm's output (no gamma, no beta) for
# a 2-D `x` (N, C), from the two lines above. `exercise_1()` compares it with refnet's and with
# central differences.

# %%
def bn_forward_jvp(x, tx, eps):
    raise NotImplementedError("exercise 1: the tangent of batchnorm(x) along tx")


def _attempt(check):
    try:
        return check()
    except NotImplementedError as e:
        print(f"not attempted yet: {e}")
        return False


def exercise_1(jvp=None):
    """Your JVP against refnet's batchnorm_forward_jvp and central differences."""
    jvp = jvp or bn_forward_jvp

    def check():
        r = np.random.default_rng(71)
        ok = True
        for eps in (0.0, 1e-3):
            xx, tt = r.standard_normal((6, 4)) * 2 + 1, r.standard_normal((6, 4))
            yours = np.asarray(jvp(xx, tt, eps))
            ref = ops.batchnorm_forward_jvp(ops.batchnorm_forward(xx, None, None, eps)[1], tt)
            fd = (ops.batchnorm_forward(xx + 1e-6 * tt, None, None, eps)[0]
                  - ops.batchnorm_forward(xx - 1e-6 * tt, None, None, eps)[0]) / 2e-6
            print(f"eps={eps}: |yours - refnet| = {np.abs(yours - ref).max():.1e}, "
                  f"|yours - differences| = {np.abs(yours - fd).max():.1e}")
            ok = ok and np.abs(yours - ref).max() < 1e-12 and np.abs(yours - fd).max() < 1e-7
        return bool(ok)
    return _attempt(check)


exercise_1()

# %% [markdown]
# ## Second order: the JVP of the backward
#
# The gradient is $dx = s\,Q$ with $Q = d\hat x - E[d\hat x] - \hat x\,E[d\hat x\,\hat x]$ and
# $d\hat x = \gamma\,dy$ (tutorial 1). A Hessian-vector product differentiates this along the
# tangents: of $x$ (through $s$ and $\hat x$) and of $dy$ (the tangent that flows back from the
# layers above). The product rule on each factor:
#
# $$t_{dx} = t_s\,Q + s\big(t_{d\hat x} - E[t_{d\hat x}] - t_{\hat x}\,E[d\hat x\,\hat x]
#   - \hat x\,E[t_{d\hat x}\,\hat x + d\hat x\, t_{\hat x}]\big).$$
#
# Each term is one path of $dx$ moved by one tangent. $t_s Q$ is the variance's: the
# tangent of $v$ moving $s$, which multiplies every path. It is the term most easily
# forgotten; here is what refnet's checker says when it is dropped. `check_hvp` treats the op
# as the scalar $L = \langle dout, y\rangle$ and checks every entry of the claimed $Hv$ against
# central differences of the hand-written gradient, plus the symmetry
# $\langle u, Hv\rangle = \langle Hu, v\rangle$.

# %%
args = (rng.standard_normal((6, 3)), rng.standard_normal(3), rng.standard_normal(3))
right = check_hvp(ops.batchnorm_forward, ops.batchnorm_backward, ops.batchnorm_forward_jvp,
                  ops.batchnorm_backward_jvp, args, {"eps": 1e-5})
print(right)


def without_variance_term(dy, tdy, cache, tx, tgamma=None, tbeta=None):
    tdx, tdgamma, tdbeta = ops.batchnorm_backward_jvp(dy, tdy, cache, tx, tgamma, tbeta)
    s, gamma = cache["inv_std"], cache["gamma"]
    xhat = (cache["xc"] - cache["shift"]) * s
    q = gamma * dy - (gamma * dy).mean(0) - xhat * (gamma * dy * xhat).mean(0)
    return tdx + s * s * (xhat * tx).mean(0) * q, tdgamma, tdbeta     # minus t_s Q


wrong = check_hvp(ops.batchnorm_forward, ops.batchnorm_backward, ops.batchnorm_forward_jvp,
                  without_variance_term, args, {"eps": 1e-5})
print(wrong)

# %% [markdown]
# ### Exercise 2: the JVP of the backward
#
# Write `bn_backward_jvp(dy, tdy, x, tx, eps)`: the tangent of $dx$ for BatchNorm without gamma
# and beta ($d\hat x = dy$), 2-D `x`. `exercise_2()` compares it with refnet's
# `batchnorm_backward_jvp`.

# %%
def bn_backward_jvp(dy, tdy, x, tx, eps):
    raise NotImplementedError("exercise 2: the tangent of batchnorm's dx")


def exercise_2(jvp=None):
    """Your backward JVP against refnet's."""
    jvp = jvp or bn_backward_jvp

    def check():
        r = np.random.default_rng(72)
        ok = True
        for eps in (0.0, 1e-3):
            xx, tt, dy, tdy = (r.standard_normal((7, 3)) for _ in range(4))
            cache = ops.batchnorm_forward(xx, None, None, eps)[1]
            ref = ops.batchnorm_backward_jvp(dy, tdy, cache, tt)[0]
            err = np.abs(np.asarray(jvp(dy, tdy, xx, tt, eps)) - ref).max()
            print(f"eps={eps}: |yours - refnet| = {err:.1e}")
            ok = ok and err < 1e-12
        return bool(ok)
    return _attempt(check)


exercise_2()

# %% [markdown]
# ## Two identities of a scale-invariant weight
#
# A unit $w_G$ before BatchNorm (with $\epsilon = 0$) does not change the loss when scaled:
# $L(c\,w_G) = L(w_G)$. Differentiate twice (theory/README.md, section 23):
#
# $$H(w)\,[w_G, 0] = [-g_G(w), 0],\qquad H_{GG}(c\,w) = H_{GG}(w)/c^2 .$$
#
# The second makes the top eigenvalue of a layer's Hessian block
# $\lambda_{\max}(H(w)) = \lambda_{\max}(H(\hat w))/\lVert w\rVert^2$: the step size times the
# curvature, $\mathrm{lr}\,\lambda_{\max}$, is the effective learning rate
# $\mathrm{lr}/\lVert w\rVert^2$ times the curvature of the direction. Check the first on a
# small network, with `model.hvp` (one forward, one forward JVP, one backward JVP):

# %%
data = load_dataset("fashion-mnist", subset=5000, test_subset=500, seed=0)
X = data.x_train.reshape(len(data.x_train), -1).astype(np.float64)
Y = data.y_train
xe, ye = X[:256], Y[:256]          # the batch every curvature below is measured on


def bn_mlp(eps=0.0):
    model = mlp(784, width=32, norm="bn", rng=0, dtype=np.float64)
    for m in model.modules():
        if isinstance(m, (BatchNorm1d, BatchNorm2d)):
            m.eps = eps
    return model


model = bn_mlp()
g = gradient(model, xe, ye)
W = dict(model.named_parameters())["4.weight"]
v = {"4.weight": np.zeros(W.shape)}
v["4.weight"][5] = W.data[5]                                   # one unit: one scale group
hv = model.hvp(xe, ye, v)
euler_err = max(np.abs(hv["4.weight"][5] - so.euler_hvp(g["4.weight"][5])).max(),
                np.abs(np.delete(hv["4.weight"], 5, axis=0)).max(), np.abs(hv["1.weight"]).max())
print(f"H [w_G, 0] + [g_G, 0]: largest entry {euler_err:.1e} (gradient entries up to "
      f"{np.abs(g['4.weight']).max():.1e})")

# %% [markdown]
# ### Exercise 3: the sharpness after rescaling
#
# Write `scaled_sharpness(lam, c)`: the top eigenvalue of the layer's Hessian block after every
# unit of the layer is multiplied by `c`, given `lam`, the top eigenvalue before. `exercise_3()`
# measures both by Lanczos (`top_eigenvalues`: `scipy.sparse.linalg.eigsh` on `model.hvp`).

# %%
def scaled_sharpness(lam, c):
    raise NotImplementedError("exercise 3: lambda_max after scaling the layer by c")


def exercise_3(law=None):
    """Your law against Lanczos at c = 0.5 and c = 3."""
    law = law or scaled_sharpness

    def check():
        net = bn_mlp()
        w = dict(net.named_parameters())["4.weight"]
        lam = top_eigenvalues(net, xe, ye, "4.weight")[0]
        ok = True
        for c in (0.5, 3.0):
            w.data *= c
            measured = top_eigenvalues(net, xe, ye, "4.weight")[0]
            w.data /= c
            yours = float(law(lam, c))
            print(f"c={c}: measured {measured:.6f}, yours {yours:.6f}")
            ok = ok and abs(yours / measured - 1) < 1e-6
        return bool(ok)
    return _attempt(check)


exercise_3()

# %% [markdown]
# ## Watch it in training: L2 moves the layer to where the curvature is larger
#
# The same MLP (784-32-32-10, BatchNorm with $\epsilon = 0$), plain SGD at lr 0.1 for 800 steps
# of 128 examples, without L2 and with $\lambda = 5\cdot10^{-3}$ (refnet's `l2`, the paper's
# convention: the loss gains $\lambda\lVert w\rVert^2$). Every 100 steps, by Lanczos on the
# second layer's block: $\lambda_{\max}(H(w))$, and the squared norm $\lVert w\rVert^2$ of the
# layer; their product is $\lambda_{\max}(H(\hat w))$ with $\hat w = w/\lVert w\rVert$, the
# curvature of the direction, scaled to unit norm as one tensor.

# %%
lr, steps, every = 0.1, 800, 100
curves = {}
for l2 in (0.0, 5e-3):
    net = bn_mlp()
    opt = SGD(trainable_parameters(net), lr=lr, l2=l2)
    w = dict(net.named_parameters())["4.weight"]
    batches = np.random.default_rng(1)
    rows = []
    for step in range(steps + 1):
        if step % every == 0:
            lam = top_eigenvalues(net, xe, ye, "4.weight", tol=1e-8)[0]
            rows.append((step, float((w.data ** 2).sum()), lam))
        if step < steps:
            idx = batches.integers(0, len(X), 128)
            net.zero_grad()
            _, dlogits = ops.softmax_cross_entropy(net(X[idx]), Y[idx])
            net.backward(dlogits)
            opt.step()
    curves[l2] = np.array(rows)
    final_net = net
    print(f"l2={l2}: " + ", ".join(f"step {s:.0f}: |w|^2 {n2:.2f}, lam {lam:.3f}" for s, n2, lam in rows[::2]))

fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
for l2, c in curves.items():
    label = f"l2 = {l2:g}"
    axes[0].plot(c[:, 0], c[:, 1], marker="o", label=label)
    axes[1].plot(c[:, 0], lr * c[:, 2], marker="o", label=label)
    axes[2].plot(c[:, 0], c[:, 1] * c[:, 2], marker="o", label=label)
axes[0].set_title("||w||^2")
axes[1].set_title("lr * lambda_max(H(w))")
axes[2].set_title("lambda_max(H(w_hat)) = ||w||^2 lambda_max(H(w))")
for ax in axes:
    ax.set_xlabel("step")
    ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# Without L2 the norm creeps up and the step-times-curvature follows only the direction's
# curvature. With L2 the squared norm falls to about a third in 800 steps, and
# $\mathrm{lr}\,\lambda_{\max}$ ends higher although the direction's curvature (right) ends
# *lower* than without L2: the larger step-size-times-curvature is the effective learning rate
# $\mathrm{lr}/\lVert w\rVert^2$ at work. The identity part is exact; the direction's
# curvature along training is an observation of this run, not a prediction.

# %% [markdown]
# ## What we found

# %%
w = dict(final_net.named_parameters())["4.weight"]
lam_w = top_eigenvalues(final_net, xe, ye, "4.weight")[0]
n2 = float((w.data ** 2).sum())
w.data /= np.sqrt(n2)
lam_hat = top_eigenvalues(final_net, xe, ye, "4.weight")[0]
w.data *= np.sqrt(n2)
print(f"after L2 training: lr lam(H(w)) = {lr * lam_w:.6f}, (lr/|w|^2) lam(H(w_hat)) = "
      f"{so.effective_sharpness(lr, lam_hat, np.sqrt(n2)):.6f}")
no_l2, with_l2 = curves[0.0], curves[5e-3]
assert euler_err < 1e-9 * np.abs(g["4.weight"]).max()                 # H w_G = -g_G, exactly
assert abs(so.effective_sharpness(lr, lam_hat, np.sqrt(n2)) / (lr * lam_w) - 1) < 1e-8  # the identity
assert right.ok and wrong.status == "failed"                          # the checker catches t_s Q
assert with_l2[-1, 1] < 0.5 * no_l2[-1, 1]                             # L2 shrank the layer
assert with_l2[-1, 2] > no_l2[-1, 2]                                   # ... and its curvature is larger
assert with_l2[-1, 1] * with_l2[-1, 2] < no_l2[-1, 1] * no_l2[-1, 2]   # though its direction's is smaller
