"""Experiment 10, sharpness, on the tiny preset: the second-order identities pass on the real
networks, a planted error in the Hessian-vector product fails them, and the data has what the
figure and the report read."""

import json

import numpy as np
import pytest

from refnet import plots
from refnet.experiments import NAMES, config, sharpness
from refnet.experiments.runner import Runner
from refnet.nn import curvature

IDENTITY_CLAIMS = ("BN MLP, eps = 0: H(w) [w_G", "BN MLP, eps = 0: H(c w_G)", "BN CNN, eps = 0: H(w) [w_G",
                   "BN CNN, eps = 0: H(c w_G)", "SGD: lr lambda_max")


@pytest.fixture(scope="module")
def cfg():
    return config.make_config("tiny", data="synthetic")


@pytest.fixture(scope="module")
def data(cfg):
    return sharpness.run(cfg, Runner(jobs=1, progress=False))


def _row(data, prefix):
    found = [c for c in data["claims"] if c["claim"].startswith(prefix)]
    assert len(found) == 1, (prefix, [c["claim"] for c in data["claims"]])
    return found[0]


def test_sharpness_is_an_experiment_of_reproduce():
    assert "sharpness" in NAMES and "sharpness" in plots.PLOTTERS


@pytest.mark.parametrize("prefix", IDENTITY_CLAIMS)
def test_identity_rows_pass_and_say_what_they_are(data, prefix):
    row = _row(data, prefix)
    assert row["pass"], row
    assert row["kind"] == "identity" and row["inputs"] and row["tolerance_source"]
    assert row["tolerance"] <= 1e-8 and row["n_compared"] >= 2


@pytest.fixture(scope="module")
def planted(cfg):
    """The experiment with H v replaced by (H + 1e-3 I) v: symmetric, but not scale-covariant,
    and H w != -g."""
    right = curvature.hvp

    def shifted(model, x, y, v):
        return {k: hv + 1e-3 * v[k] if k in v else hv for k, hv in right(model, x, y, v).items()}

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(curvature, "hvp", shifted)
        return sharpness.run(cfg, Runner(jobs=1, progress=False))


@pytest.mark.parametrize("prefix", IDENTITY_CLAIMS)
def test_identity_rows_fail_with_a_wrong_hessian_vector_product(planted, prefix):
    row = _row(planted, prefix)
    assert not row["pass"] and row["rel_error"] > row["tolerance"], row


def test_tracks_cover_every_checkpoint_and_tracked_layer(data, cfg):
    c = cfg["sharpness"]
    for run, steps, n_layers in (("mlp/no L2", c["checkpoints"], 2), ("mlp/L2", c["checkpoints"], 2),
                                 ("cnn/L2", c["cnn_checkpoints"], 1)):
        t = data["tracks"][run]
        assert t["step"] == steps and len(t["layers"]) == n_layers
        for layer in t["layers"].values():
            assert len(layer["sharpness"]) == len(steps) == len(layer["lam_hat"])
            assert len(layer["lam_hat_measured"]) == len(t["identity_step"])
            assert np.all(np.asarray(layer["norm2"]) > 0)


def test_l2_shrinks_the_hidden_layers(data):
    no, yes = data["tracks"]["mlp/no L2"]["layers"], data["tracks"]["mlp/L2"]["layers"]
    for name in no:
        assert yes[name]["norm2"][-1] < no[name]["norm2"][-1]


@pytest.mark.parametrize("net", ["mlp", "cnn"])
def test_eps_bend_is_reported_and_grows_at_small_scales(data, cfg, net):
    bend = data["identities"][net]["bend"]
    assert len(bend) == len(cfg["sharpness"]["bend_c"])
    assert bend[-1] > 100 * bend[0] > 0  # bend_c falls: the invariance breaks as eps/(var + eps)
    rows = [o for o in data["observations"] if o["observation"].startswith(f"BN {net.upper()}, eps = 1e-5")]
    assert [o["value"] for o in rows] == pytest.approx(bend)


def test_data_is_plain_and_the_figure_is_drawn(data, tmp_path):
    json.dumps(data)
    path = plots.plot(data, str(tmp_path / data["figure"]))
    assert (tmp_path / data["figure"]).stat().st_size > 10_000 and path.endswith(".png")
