"""Lion, Muon, Rotational and Hyperball stop and resume bit for bit: through ``state_dict`` /
``load_state_dict`` (via the checkpoint's npz + JSON split, float32 and float64) and through a
checkpoint file of a training BN network."""

import numpy as np
import pytest
from test_optim import _through_files, marked_params, train

from refnet import checkpoint
from refnet.nn import Parameter
from refnet.nn.models import mlp, trainable_parameters
from refnet.optim import SGD, Adam, Hyperball, Lion, Muon, Rotational

MAKERS = {
    "lion": lambda ps: Lion([{"params": ps[:2]}, {"params": ps[2:], "lr": 3e-3}], lr=1e-2, weight_decay=0.1),
    "muon": lambda ps: Muon(ps, lr=0.02, momentum=0.9),
    "muon-plain": lambda ps: Muon(ps, lr=0.02, nesterov=False, adjust_lr_fn="match_rms_adamw"),
    "rotational-sgd": lambda ps: Rotational(SGD(ps, lr=0.1, momentum=0.9, l2=1e-3)),
    "rotational-adamw": lambda ps: Rotational(Adam(ps, lr=1e-2, weight_decay=0.1)),
    "rotational-lion": lambda ps: Rotational(Lion(ps, lr=1e-3, weight_decay=1.0), update_norm_decay=0.5),
    "hyperball-sgd": lambda ps: Hyperball(SGD(ps, lr=0.05, momentum=0.9)),
    "hyperball-muon": lambda ps: Hyperball(Muon(ps, lr=0.02), radius=2.0),
}


@pytest.mark.parametrize("name", sorted(MAKERS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_state_dict_round_trip_continues_bit_identically(rng, name, dtype):
    make = MAKERS[name]
    straight = marked_params(rng, dtype)
    resumed = [Parameter(p.data.copy(), decay=p.decay, scale_group=p.scale_group) for p in straight]
    train(make(straight), straight, 16)
    first = make(resumed)
    train(first, resumed, 8)
    saved = _through_files(first.state_dict())
    del first
    second = make(resumed)
    second.param_groups[0]["lr"] = 123.0  # must be restored from the state dict
    second.load_state_dict(saved)
    train(second, resumed, 8, start=8)
    for a, b in zip(straight, resumed):
        assert b.data.dtype == dtype
        np.testing.assert_array_equal(a.data, b.data)


def _fit(model, opt, steps, seed):
    """``steps`` updates on a fixed random problem (seeded per step, so a resume sees the same)."""
    for t in range(seed, seed + steps):
        r = np.random.default_rng(t)
        x, y = r.standard_normal((16, 6)).astype(np.float32), r.integers(0, 3, 16)
        model.zero_grad()
        logits = model(x)
        d = np.exp(logits - logits.max(axis=1, keepdims=True))
        d /= d.sum(axis=1, keepdims=True)
        d[np.arange(16), y] -= 1
        model.backward(d / 16)
        opt.step()


# zero_mean centres the weights when the wrapper is built, so only a resume that loads the
# weights afterwards (a checkpoint, as ``refnet train --resume``) continues bit for bit.
CHECKPOINTED = {**MAKERS, "rotational-adamw-zero-mean":
                lambda ps: Rotational(Adam(ps, lr=1e-2, weight_decay=0.1), zero_mean=True)}


@pytest.mark.parametrize("name", sorted(CHECKPOINTED))
def test_checkpoint_resume_is_bit_identical(tmp_path, name):
    make = CHECKPOINTED[name]
    straight = mlp(6, num_classes=3, width=5, depth=2, rng=0)
    _fit(straight, make(trainable_parameters(straight)), 12, seed=0)
    model = mlp(6, num_classes=3, width=5, depth=2, rng=0)
    opt = make(trainable_parameters(model))
    _fit(model, opt, 6, seed=0)
    path = checkpoint.save_checkpoint(tmp_path / "c.npz", model, opt, {"step": 6})
    fresh = mlp(6, num_classes=3, width=5, depth=2, rng=1)  # other weights, fresh state
    fresh_opt = make(trainable_parameters(fresh))
    checkpoint.load_checkpoint(path, fresh, fresh_opt)
    _fit(fresh, fresh_opt, 6, seed=6)
    for (k, a), b in zip(straight.state_dict().items(), fresh.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=k)
