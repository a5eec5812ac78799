"""Muon as specified: against ``torch.optim.Muon`` (PyTorch 2.13) with its Newton-Schulz patched
to float64 (1e-12 over 60 steps), against the unpatched bfloat16 PyTorch over one step (at the
tolerance measured below), refnet's extensions (conv kernels as (out, in*k*k) matrices, AdamW
for the 1-D parameters, decay only where ``p.decay``), the Newton-Schulz map itself, bad input.
State dicts and checkpoints: tests/test_optim_resume.py. Torch through ``oracle.require_torch()``."""

import math

import numpy as np
import pytest
from oracle import require_torch
from test_optim import grad_at, make_params, train

from refnet.nn import Parameter
from refnet.optim import Adam, Muon, newton_schulz

STEPS = 60
TOL = 1e-12

TORCH_SETTINGS = [
    dict(lr=0.02),
    dict(lr=0.02, weight_decay=0.3, momentum=0.9, nesterov=False),
    dict(lr=0.01, adjust_lr_fn="match_rms_adamw"),
    dict(lr=0.05, weight_decay=0.0, ns_steps=3, ns_coefficients=(2.0, -1.5, 0.5), eps=1e-3),
]


def _torch_float64_newton_schulz(torch):
    """PyTorch's ``_zeropower_via_newtonschulz`` line for line, but in float64 (not bfloat16)."""
    def zeropower(grad, ns_coefficients, ns_steps, eps):
        a, b, c = ns_coefficients
        ortho = grad.double()
        if grad.size(0) > grad.size(1):
            ortho = ortho.T
        ortho = ortho.div(ortho.norm().clamp(min=eps))
        for _ in range(ns_steps):
            gram = ortho @ ortho.T
            update = torch.addmm(gram, gram, gram, beta=b, alpha=c)
            ortho = torch.addmm(ortho, update, ortho, beta=a)
        return ortho.T if grad.size(0) > grad.size(1) else ortho
    return zeropower


@pytest.mark.parametrize("cfg", TORCH_SETTINGS, ids=str)
def test_equals_torch_muon_with_float64_newton_schulz_over_60_steps(rng, monkeypatch, cfg):
    torch = require_torch()
    import torch.optim._muon as torch_muon
    monkeypatch.setattr(torch_muon, "_zeropower_via_newtonschulz", _torch_float64_newton_schulz(torch))
    params = make_params(rng, shapes=((4, 3), (3, 7), (6, 6), (2, 3, 2, 2)), decay=(True,) * 4)
    tensors = [torch.tensor(p.data.reshape(p.data.shape[0], -1).copy()) for p in params]  # conv as (2, 12)
    opt, topt = Muon(params, **cfg), torch.optim.Muon(tensors, **cfg)
    for t in range(STEPS):
        for p, x in zip(params, tensors):
            p.grad[...] = grad_at(p.data, t)
            x.grad = torch.tensor(grad_at(x.numpy(), t))
        opt.step()
        topt.step()
    for p, x in zip(params, tensors):
        np.testing.assert_allclose(p.data.reshape(x.shape), x.numpy(), rtol=0, atol=TOL)


# One step against PyTorch's own bfloat16 Newton-Schulz: ||step_refnet - step_torch||_F / ||step||_F,
# measured as the largest over 20 seeds with gradients scaled by 1e-3..1e3 (PyTorch 2.13, CPU):
# 0.043 at (6, 6), 0.0069 at (64, 288), 0.0040 at (256, 784). Tolerances 1.5x that.
BFLOAT16_TOL = {(6, 6): 0.065, (64, 288): 0.0105, (256, 784): 0.006}


@pytest.mark.parametrize("shape", sorted(BFLOAT16_TOL))
def test_one_step_agrees_with_torch_bfloat16_muon_to_the_measured_tolerance(shape):
    torch = require_torch()
    worst = 0.0
    for seed in range(20):
        r = np.random.default_rng(seed)
        w, g = r.standard_normal(shape), r.standard_normal(shape) * 10.0 ** r.uniform(-3, 3)
        p = Parameter(w.copy())
        p.grad[...] = g
        Muon([p], lr=0.02).step()
        x = torch.tensor(w.copy())
        x.grad = torch.tensor(g)
        torch.optim.Muon([x], lr=0.02).step()
        ours, theirs = w - p.data, w - x.numpy()
        worst = max(worst, np.linalg.norm(ours - theirs) / np.linalg.norm(ours))
    assert 1e-4 < worst < BFLOAT16_TOL[shape]  # bfloat16 differs, and by no more than measured


def test_one_dimensional_parameters_are_updated_by_adamw(rng):
    params = make_params(rng, shapes=((5,), (4,)), decay=(True, False))
    copies = [Parameter(p.data.copy(), decay=p.decay) for p in params]
    train(Muon(params, lr=0.01, weight_decay=0.2, adamw_betas=(0.8, 0.9), adamw_eps=1e-6), params, STEPS)
    train(Adam(copies, lr=0.01, weight_decay=0.2, betas=(0.8, 0.9), eps=1e-6), copies, STEPS)
    for p, q in zip(params, copies):
        np.testing.assert_allclose(p.data, q.data, rtol=0, atol=TOL)


def test_conv_kernels_step_as_out_by_in_k_k_matrices(rng):
    kernel = Parameter(rng.standard_normal((3, 2, 3, 3)))
    matrix = Parameter(kernel.data.reshape(3, 18).copy())
    grads = rng.standard_normal((5, 3, 18))
    a, b = Muon([kernel], lr=0.02), Muon([matrix], lr=0.02)
    for g in grads:
        kernel.grad[...] = g.reshape(3, 2, 3, 3)
        matrix.grad[...] = g
        a.step()
        b.step()
    np.testing.assert_array_equal(kernel.data.reshape(3, 18), matrix.data)


@pytest.mark.parametrize("adjust_lr_fn, factor", [
    (None, math.sqrt(32 / 9)),  # reference muon_update: sqrt(max(1, kh/kw)) = 1; torch's shape[:2]: sqrt(32)
    ("match_rms_adamw", 0.2 * math.sqrt(32)),
])
def test_conv_kernels_adjust_lr_by_the_shape_of_the_reshaped_matrix(rng, adjust_lr_fn, factor):
    # (F, C, k, k) = (32, 1, 3, 3): refnet's factor comes from (F, C k k) = (32, 9), not from the
    # 4-D kernel's last two axes (the reference) nor its first two (torch's _adjust_lr)
    kernel = Parameter(np.zeros((32, 1, 3, 3)))
    kernel.grad[...] = rng.standard_normal((32, 1, 3, 3))
    Muon([kernel], lr=0.01, nesterov=False, momentum=0.0, adjust_lr_fn=adjust_lr_fn).step()
    expected = -0.01 * factor * newton_schulz(kernel.grad.reshape(32, 9))
    np.testing.assert_allclose(kernel.data.reshape(32, 9), expected, rtol=1e-12, atol=1e-15)


def test_decay_is_decoupled_with_the_unadjusted_lr_and_only_on_decay_parameters(rng):
    params = make_params(rng, shapes=((8, 2), (8, 2)), decay=(True, False))
    w0 = [p.data.copy() for p in params]
    train(Muon(params, lr=0.1, weight_decay=0.2), params, 10, grad=lambda w, t: np.zeros_like(w))
    np.testing.assert_allclose(params[0].data, (1 - 0.1 * 0.2) ** 10 * w0[0], rtol=1e-13)
    np.testing.assert_array_equal(params[1].data, w0[1])


@pytest.mark.parametrize("shape", [(16, 40), (40, 16), (24, 24)])
def test_newton_schulz_pushes_every_singular_value_near_one_and_keeps_the_vectors(rng, shape):
    u, s, vt = np.linalg.svd(rng.standard_normal(shape) * np.linspace(0.05, 1, shape[1]), full_matrices=False)
    g = (u * s) @ vt
    o = newton_schulz(g)
    s_out = np.linalg.svd(o, compute_uv=False)
    assert 0.6 < s_out.min() and s_out.max() < 1.25  # PyTorch: "S' ~ Uniform(0.5, 1.5)"
    np.testing.assert_allclose(u.T @ o @ vt.T, np.diag(np.diag(u.T @ o @ vt.T)), atol=1e-10)


def test_newton_schulz_runs_in_the_inputs_dtype(rng):
    assert newton_schulz(rng.standard_normal((4, 6)).astype(np.float32)).dtype == np.float32


def test_nesterov_accepts_numpy_bools_as_sgd_does():
    p = Parameter(np.ones((2, 2)))
    assert Muon([p], nesterov=np.True_).param_groups[0]["nesterov"] is True


@pytest.mark.parametrize("shape, key, expected", [
    ((4,), "momentum_buffer", "exp_avg"),  # a 1-D parameter steps by AdamW
    ((3, 4), "exp_avg", "momentum_buffer"),
])
def test_loading_state_of_the_other_update_kind_is_refused_by_name(rng, shape, key, expected):
    p = Parameter(rng.standard_normal(shape))
    sd = Muon([p]).state_dict()
    sd["state"][0] = {"step": 1, key: np.zeros(shape)}
    with pytest.raises(ValueError, match=rf"Muon.load_state_dict\(state_dict\): parameter 0 .*{key}.*{expected}"):
        Muon([p]).load_state_dict(sd)


@pytest.mark.parametrize("build,error,match", [
    (lambda ps: Muon(ps, lr=-1e-3), ValueError, r"Muon\(lr\): got -0.001"),
    (lambda ps: Muon(ps, momentum=1.0), ValueError, r"Muon\(momentum\)"),
    (lambda ps: Muon(ps, weight_decay=-0.1), ValueError, r"Muon\(weight_decay\)"),
    (lambda ps: Muon(ps, nesterov=1), TypeError, r"Muon\(nesterov\)"),
    (lambda ps: Muon(ps, ns_steps=0), ValueError, r"Muon\(ns_steps\): got 0"),
    (lambda ps: Muon(ps, ns_steps=100), ValueError, r"Muon\(ns_steps\)"),
    (lambda ps: Muon(ps, ns_steps=2.0), ValueError, r"Muon\(ns_steps\)"),
    (lambda ps: Muon(ps, ns_coefficients=(1.0, 2.0)), ValueError, r"Muon\(ns_coefficients\)"),
    (lambda ps: Muon(ps, ns_coefficients=(1.0, "x", 2.0)), TypeError, r"Muon\(ns_coefficients\[1\]\)"),
    (lambda ps: Muon(ps, eps=-1.0), ValueError, r"Muon\(eps\)"),
    (lambda ps: Muon(ps, adjust_lr_fn="spectral"), ValueError, r"Muon\(adjust_lr_fn\): got 'spectral'"),
    (lambda ps: Muon(ps, adamw_betas=(0.9, 1.0)), ValueError, r"Muon\(adamw_betas\[1\]\)"),
    (lambda ps: Muon([{"params": ps, "ns_steps": -1}]), ValueError, r"Muon\(params\[0\]\['ns_steps'\]\)"),
])
def test_bad_arguments_raise_clear_errors(rng, build, error, match):
    with pytest.raises(error, match=match):
        build(make_params(rng))
