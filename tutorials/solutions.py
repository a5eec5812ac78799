"""Reference solutions to the tutorials' exercises (try first!).

Each exercise in a tutorial ends with a check you call, e.g. ``exercise_1()``; pass these
to it to see them pass: ``exercise_1(solutions.layernorm_forward, solutions.layernorm_backward)``.
``tests/test_tutorials.py`` does exactly that for every exercise (``SOLUTIONS`` below).
"""

import numpy as np

from refnet.nn import Module, Parameter


# --- 01 write a layer ----------------------------------------------------------------
def layernorm_forward(x, gamma, beta, eps=1e-5):
    """Per row: xhat = (x - mean) / sqrt(var + eps); y = gamma * xhat + beta."""
    mu = x.mean(axis=1, keepdims=True)
    xc = x - mu
    s = 1 / np.sqrt((xc ** 2).mean(axis=1, keepdims=True) + eps)
    xhat = xc * s
    return gamma * xhat + beta, (xhat, s, gamma)


def layernorm_backward(dy, cache):
    """BatchNorm's compact backward with the axes swapped: per row, over D features,
    dx = (s / D) * (D * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat)); the parameters
    sum over the batch."""
    xhat, s, gamma = cache
    d = dy.shape[1]
    dxhat = gamma * dy
    dx = (s / d) * (d * dxhat - dxhat.sum(axis=1, keepdims=True)
                    - xhat * (dxhat * xhat).sum(axis=1, keepdims=True))
    return dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)


def leaky_relu_forward(x, negative_slope=0.01):
    """y = x where x > 0, negative_slope * x elsewhere."""
    return np.where(x > 0, x, negative_slope * x), (x > 0, negative_slope)


def leaky_relu_backward(dy, cache):
    positive, slope = cache
    return np.where(positive, dy, slope * dy)


class MyScale(Module):
    """y = x * weight, one factor per feature, no L2 on it."""

    def __init__(self, num_features):
        super().__init__()
        self.weight = Parameter(np.ones(num_features), decay=False)
        self._x = None

    def forward(self, x):
        self._x = x
        return x * self.weight.data

    def backward(self, dy):
        self.weight.grad += (dy * self._x).sum(axis=0)   # += : gradients accumulate
        return dy * self.weight.data


# --- 02 scale invariance --------------------------------------------------------------
def build_relu_before_bn():
    """ReLU is positively homogeneous, so BatchNorm still removes each unit's scale."""
    from refnet.nn import BatchNorm1d, Flatten, Linear, ReLU, Sequential
    rng = np.random.default_rng(0)
    model = Sequential(Flatten(), Linear(784, 32, bias=False, rng=rng, dtype=np.float64), ReLU(),
                       BatchNorm1d(32, dtype=np.float64), Linear(32, 10, rng=rng, dtype=np.float64))
    model[1].weight.scale_group = "unit"
    return model


def predicted_cnn_groups():
    """A conv filter feeding BN is one unit; feeding LN (over C, H, W) the whole tensor is one
    group; the norms' own gamma/beta and the head are not scale-invariant."""
    bn = {"0.weight": "unit", "1.weight": None, "1.bias": None, "5.weight": None, "5.bias": None}
    ln = {"0.weight": "tensor", "1.weight": None, "1.bias": None, "5.weight": None, "5.bias": None}
    return bn, ln


def predicted_angle_ratio(optimizer, c):
    """tan(angle) = |step across w| / ||w||. SGD: the step lr*g/c over the radius c*||w||:
    c^-2 (exact: the step is orthogonal to w). Adam: the step is scale-free (g/|g|), over the
    radius c*||w||: c^-1 (up to eps and the step's small radial part)."""
    return c ** -2.0 if optimizer == "sgd" else c ** -1.0


# --- 03 effective learning rate ------------------------------------------------------
def my_angle(w_before, w_after):
    """2*atan2(|a_hat - b_hat|, |a_hat + b_hat|): both norms keep their digits at any angle,
    where arccos(cos) is flat at 0 and loses them all."""
    a = w_before / np.linalg.norm(w_before, axis=1, keepdims=True)
    b = w_after / np.linalg.norm(w_after, axis=1, keepdims=True)
    return 2 * np.arctan2(np.linalg.norm(a - b, axis=1), np.linalg.norm(a + b, axis=1))


def norm_after(t, norm0, lr, lam):
    """g = 0 in identity 4: ||w_t|| = |1 - 2 lr lam|^t ||w_0||; the effective lr lr/||w||^2
    grows like (1 - 2 lr lam)^(-2t) until training destabilizes."""
    return abs(1 - 2 * lr * lam) ** t * norm0


def predicted_momentum_angle(lr, lam, mu):
    """cos(theta) = 1 - 2 lr lam / (1 + mu) (theory/README.md, section 5)."""
    return np.arccos(1 - 2 * lr * lam / (1 + mu))


# --- 04 L2 is a learning-rate knob ---------------------------------------------------
def momentum_symmetry(c, lr, lam):
    """d = g + 2 lam w scales by 1/c when lam -> lam/c^2, so the buffer scales by 1/c and the
    step lr' b' must scale by c: lr' = c^2 lr. The same map as without momentum."""
    return c * c * lr, lam / (c * c)


def projected_equivalent_lr(lr, lam):
    """(q w - lr g)/|.| = (w - (lr/q) g)/|.| with q = 1 - 2 lr lam."""
    return lr / (1 - 2 * lr * lam)


def norm4_without_l2(t, norm0, lr, G2):
    """lam = 0 in identity 4: x' = x + lr^2 |g~|^2 / x, so y = x^2 gains 2 lr^2 |g~|^2 (+ a
    lr^4 term) per step: ||w_t||^4 = ||w_0||^4 + 2 lr^2 G2 t."""
    return norm0 ** 4 + 2 * lr * lr * G2 * t


# --- 05 SGD, Adam, AdamW --------------------------------------------------------------
def refnet_options(torch_name, wd):
    """torch's SGD and Adam add wd * w to the gradient, the gradient of (wd/2)||w||^2: refnet's
    coupled l2 = wd/2. torch's AdamW decays w outside Adam: refnet's weight_decay = wd."""
    return {"weight_decay": wd} if torch_name == "AdamW" else {"l2": wd / 2}


def adam_l2_symmetry(c, lr, lam, eps):
    """g + 2 lam w must scale like g (by 1/c): lam/c^2; then m and sqrt(v) scale by 1/c and the
    step m/(sqrt(v) + eps) is unchanged iff eps/c; it must grow by c: lr -> c lr."""
    return c * lr, lam / (c * c), eps / c


def adam_angle_ratio(d1, G2_1, d2, G2_2):
    """angle ~ (d / G)^(1/3), G = sqrt(G2)."""
    return ((d1 / np.sqrt(G2_1)) / (d2 / np.sqrt(G2_2))) ** (1 / 3)


# --- 06 the rotational view -------------------------------------------------------------
def adamw_angle(lr, wd, b1):
    """Decay removes 2 lr wd ||w||^2 per step, the steps add lr^2 d; angle^2 = k lr^2 d / ||w||^2."""
    return np.sqrt(2 * lr * wd * (1 - b1) / (1 + b1))


def rotational_move(w, u, eta_r, n, nu, t, beta):
    """Project u orthogonal to each row, update its running mean square, step, back to norm n."""
    u = u - w * ((u * w).sum(axis=1, keepdims=True) / (w * w).sum(axis=1, keepdims=True))
    nu = beta * nu + (1 - beta) * (u * u).sum(axis=1, keepdims=True)
    moved = w - eta_r * n * u / np.sqrt(nu / (1 - beta ** t))
    return n * moved / np.linalg.norm(moved, axis=1, keepdims=True), nu


def sgdm_angle(lr, l2, momentum):
    """PyTorch's weight_decay is 2 * l2 (the gradient of l2 ||w||^2): sqrt(2 lr (2 l2) / (1 + mu))."""
    return np.sqrt(4 * lr * l2 / (1 + momentum))


def bn_forward_jvp(x, tx, eps):
    xhat = (x - x.mean(0)) / np.sqrt(x.var(0) + eps)
    s = 1 / np.sqrt(x.var(0) + eps)
    return s * (tx - tx.mean(0) - xhat * (xhat * tx).mean(0))


def bn_backward_jvp(dy, tdy, x, tx, eps):
    s = 1 / np.sqrt(x.var(0) + eps)
    xhat = (x - x.mean(0)) * s
    txhat = s * (tx - tx.mean(0) - xhat * (xhat * tx).mean(0))
    ts = -s * s * (xhat * tx).mean(0)
    q = dy - dy.mean(0) - xhat * (dy * xhat).mean(0)
    return ts * q + s * (tdy - tdy.mean(0) - txhat * (dy * xhat).mean(0)
                         - xhat * (tdy * xhat + dy * txhat).mean(0))


def scaled_sharpness(lam, c):
    return lam / c ** 2


SOLUTIONS = {
    "01_write_a_layer": {
        "exercise_1": (layernorm_forward, layernorm_backward),
        "exercise_2": (leaky_relu_forward, leaky_relu_backward),
        "exercise_3": (MyScale,),
    },
    "02_scale_invariance": {
        "exercise_1": (build_relu_before_bn,),
        "exercise_2": (predicted_cnn_groups,),
        "exercise_3": (predicted_angle_ratio,),
    },
    "03_effective_learning_rate": {
        "exercise_1": (my_angle,),
        "exercise_2": (norm_after,),
        "exercise_3": (predicted_momentum_angle,),
    },
    "04_l2_is_a_learning_rate_knob": {
        "exercise_1": (momentum_symmetry,),
        "exercise_2": (projected_equivalent_lr,),
        "exercise_3": (norm4_without_l2,),
    },
    "05_sgd_adam_adamw": {
        "exercise_1": (refnet_options,),
        "exercise_2": (adam_l2_symmetry,),
        "exercise_3": (adam_angle_ratio,),
    },
    "06_rotational_view": {
        "exercise_1": (adamw_angle,),
        "exercise_2": (rotational_move,),
        "exercise_3": (sgdm_angle,),
    },
    "07_batchnorm_hessian": {
        "exercise_1": (bn_forward_jvp,),
        "exercise_2": (bn_backward_jvp,),
        "exercise_3": (scaled_sharpness,),
    },
}
