"""Experiment 10, sharpness: the curvature side of the effective learning rate (theory/README.md,
section 23; ``theory.second_order``). For a scale group G (a unit before BatchNorm, or a whole
layer, every unit scaled alike) the loss is scale-invariant, so

    H(w) [w_G, 0] = [-g_G(w), 0]       and       H_GG(c w) = H_GG(w) / c^2  (H_Go: / c)

and lr lambda_max(H_GG(w)) = (lr / ||w_G||^2) lambda_max(H_GG(w_hat)), w_hat = w_G / ||w_G||:
step size times curvature is the effective learning rate times the curvature of the direction.

Runs (all curvature in float64, training mode, BN eps = 0 unless said, on a fixed batch of the
first training examples; ``refnet.nn.curvature``):
- ``curvature_identities`` on the BN MLP and a BN CNN (``cnn_widths``) after a brief SGD run:
  the Euler and the scaling residual (at each ``c``) of every invariant layer, the layer as one
  group and its first ``units`` units one by one (each scaled alone), the largest entry error
  relative to the largest entry (of g, of each block of H v). Claims, kind identity, tolerance
  1e-9: rounding only (measured 2e-15 to 1e-14 on quick and default). With eps = 1e-5 (the
  layers' own), every invariant layer scaled by each ``bend_c``: the Euler residual bends, of
  order eps / (var + eps): observations, each with that order beside it.
- ``sharpness`` on the BN MLP: plain SGD (lr ``lr``) without and with L2 (``lam``, the paper's
  convention), float32 training; at each checkpoint lambda_max of each hidden layer's block by
  Lanczos (``top_eigenvalues``), and at ``identity_at`` also lambda_max at w_hat from the same
  start vector. Claim, kind identity: lr lambda_max(H(w)) = (lr/||w||^2) lambda_max(H(w_hat)),
  worst over runs, layers and checkpoints; tolerance 1e-8: the two Lanczos runs see operators
  that differ by the exact factor ||w||^2 (eps = 0) from the same start vector, so they agree
  to rounding, not to the Lanczos tolerance (measured 2e-15 on quick). The same on one CNN layer
  (second conv) at ``cnn_checkpoints``, with L2 (w_hat at the last one).
Observations: lambda_max(H(w_hat)) and lr lambda_max(H(w)) at the end, with L2 over without; the
ratio of ||w||^2. The trajectory of lambda_max(H(w_hat)) is not held to a prediction: no closed
form for the direction's curvature is known to us, and in the quick runs without L2 it falls by
about 40% and comes back within 400 steps while ||w||^2 grows by 20%, so "lr lambda_max(H(w))
decays as ||w||^-2" (the direction's curvature held fixed) would not be a law of these runs.
"""

import numpy as np

from theory import second_order
from refnet.experiments import config, registry
from refnet.experiments.claims import observation
from refnet.experiments.runner import Runner

NAME, FIGURE = "sharpness", "fig10_sharpness.png"
TOL_IDENTITY = 1e-9
TOL_LANCZOS = 1e-8
CNN_LAYER = "4.weight"  # the second conv (Conv-BN-ReLU-Pool blocks of four modules)
ROUNDING = "rounding (float64)"
registry.register(
    *(registry.Entry(f"sharpness_euler_{net}", f"BN {net.upper()}, eps = 0: H(w) [w_G, 0] = [-g_G, 0] for every "
                     "invariant layer and unit", "identity", f"every invariant layer of the BN {net.upper()} (as one "
                     "group and its first units one by one), float64, one batch, training-mode BN", TOL_IDENTITY,
                     ROUNDING, "theory.second_order.euler_hvp", FIGURE)
      for net in ("mlp", "cnn")),
    *(registry.Entry(f"sharpness_scaling_{net}", f"BN {net.upper()}, eps = 0: H(c w_G) = H(w)/c^2 on the group, /c "
                     "across", "identity", f"every invariant layer of the BN {net.upper()}, every c of the preset, "
                     "random v on the group, float64", TOL_IDENTITY, ROUNDING,
                     "theory.second_order.hessian_scale_factor", FIGURE)
      for net in ("mlp", "cnn")),
    registry.Entry("sharpness_lanczos", "SGD: lr lambda_max(H(w)) = (lr/||w||^2) lambda_max(H(w_hat)) by Lanczos",
                   "identity", "each hidden layer of the BN MLP runs with and without L2 and one CNN layer, at the "
                   "preset's identity checkpoints; float64, eps = 0, the same Lanczos start vector at w and w_hat",
                   TOL_LANCZOS, "rounding: the two operators differ by the exact factor ||w||^2",
                   "theory.second_order.effective_sharpness", FIGURE),
)


def _identity_spec(cfg, model, batch):
    c = cfg[NAME]
    return {"task": "curvature_identities", "data": cfg["data"], "device": cfg["device"], "seed": cfg["seed"],
            "model": model, "train_steps": c["identity_train_steps"], "curvature_batch": batch,
            "c": c["c"], "bend_c": c["bend_c"], "bend_eps": 1e-5, "units": c["units"]}


def _sharpness_spec(cfg, model, lam, checkpoints, identity_at, batch, layers=None):
    c = cfg[NAME]
    return {"task": "sharpness", "data": cfg["data"], "device": cfg["device"], "seed": cfg["seed"],
            "model": model, "optim": config.sgd(c["lr"], lam), "batch_size": cfg["batch_size"],
            "checkpoints": checkpoints, "identity_at": identity_at, "steps": checkpoints[-1],
            "curvature_batch": batch, "lanczos_tol": c["lanczos_tol"], "layers": layers}


def runs(cfg):
    """[(label, spec)]: the identities on the MLP and the CNN, the MLP tracked without and with
    L2, one CNN layer tracked with L2."""
    c = cfg[NAME]
    cnn = config.model(cfg, arch="cnn", widths=c["cnn_widths"])
    return [("identities/mlp", _identity_spec(cfg, config.model(cfg, dtype="float64"), c["identity_batch"])),
            ("identities/cnn", _identity_spec(cfg, dict(cnn, dtype="float64"), c["cnn_batch"])),
            ("track/mlp/no L2", _sharpness_spec(cfg, config.model(cfg), 0.0, c["checkpoints"], c["identity_at"],
                                                c["curvature_batch"])),
            ("track/mlp/L2", _sharpness_spec(cfg, config.model(cfg), c["lam"], c["checkpoints"], c["identity_at"],
                                             c["curvature_batch"])),
            ("track/cnn/L2", _sharpness_spec(cfg, cnn, c["lam"], c["cnn_checkpoints"], c["cnn_checkpoints"][-1:],
                                             c["cnn_batch"], layers=[CNN_LAYER]))]


def specs(cfg):
    return [s for _, s in runs(cfg)]


def _identity_claims(data, arrays, meta, net):
    euler = [(0.0, float(arrays[f"{n}/euler/{part}"]), f"{n}, {part}") for n in meta["layers"]
             for part in ("layer", "units")]
    scaling = [(0.0, float(e), f"{n}, {part}, c={c:g}") for n in meta["layers"] for part in ("layer", "units")
               for c, e in zip(arrays["c"], arrays[f"{n}/scaling" + ("/units" if part == "units" else "")])]
    data["identities"][net] = {"euler": {label: m for _, m, label in euler},
                               "scaling": {label: m for _, m, label in scaling},
                               "bend_c": arrays["bend_c"].tolist(), "bend": arrays["bend"].tolist(),
                               "bend_order": arrays["bend_order"].tolist()}
    at = f"{net.upper()} after {data['identity_steps']} SGD steps, one batch"
    data["claims"] += [
        registry.worst(f"sharpness_euler_{net}", euler, "max |H w_G + g_G| / max |g_G|, worst group",
                       inputs=["refnet.nn.curvature.hvp", "refnet.nn.curvature.gradient"], window=at),
        registry.worst(f"sharpness_scaling_{net}", scaling,
                       "max entry error of c^2 H_GG(cw) v, c H_oG(cw) v vs H(w) v, relative to each block",
                       inputs=["refnet.nn.curvature.hvp"], window=at)]
    for cb, b, o in zip(arrays["bend_c"], arrays["bend"], arrays["bend_order"]):
        data["observations"].append(observation(
            f"BN {net.upper()}, eps = 1e-5: the Euler identity bends at small weight scales", FIGURE,
            f"max |H w_G + g_G| / max |g_G|, invariant layers scaled by {cb:g}", b,
            note=f"its order, max eps/(var + eps) over units: {o:.3g} (theory.second_order.eps_bend, "
                 f"theory/README.md section 23)"))


def analyze(cfg, results):
    c = cfg[NAME]
    lr = c["lr"]
    data = {"name": NAME, "figure": FIGURE, "lr": lr, "lam": c["lam"], "identities": {}, "tracks": {},
            "identity_steps": c["identity_train_steps"],
            "lanczos_residuals": {}, "claims": [], "observations": []}
    lanczos = []
    for (label, spec), (arrays, meta) in zip(runs(cfg), results):
        if label.startswith("identities/"):
            _identity_claims(data, arrays, meta, label.split("/")[1])
            continue
        steps = arrays["step"].tolist()
        track = {"step": steps, "identity_step": arrays["identity_step"].tolist(), "layers": {}}
        for n in meta["layers"]:
            norm2, lam = arrays[f"{n}/norm2"], arrays[f"{n}/lam"]
            at = [steps.index(s) for s in track["identity_step"]]
            lam_hat = arrays[f"{n}/lam_hat"]
            predicted = second_order.effective_sharpness(lr, lam_hat, np.sqrt(norm2[at]))
            for s, p, m in zip(track["identity_step"], predicted, lr * lam[at]):
                lanczos.append((float(p), float(m), f"{label.split('/', 1)[1]}, {n}, step {s}"))
                data["lanczos_residuals"][f"{label.split('/', 1)[1]}, {n}, step {s}"] = abs(m - p) / abs(p)
            track["layers"][n] = {"norm2": norm2.tolist(), "sharpness": (lr * lam).tolist(),
                                  "lam_hat": (norm2 * lam).tolist(), "lam_hat_measured": lam_hat.tolist()}
        data["tracks"][label.split("/", 1)[1]] = track
    data["claims"].append(registry.worst(
        "sharpness_lanczos", lanczos, f"relative error, worst run, layer and checkpoint (lr {lr:g})",
        inputs=["refnet.nn.curvature.top_eigenvalues"], window="checkpoints " + ", ".join(
            f"{k}: {v['identity_step']}" for k, v in data["tracks"].items())))
    no, yes = data["tracks"]["mlp/no L2"], data["tracks"]["mlp/L2"]
    for n in no["layers"]:
        a, b = no["layers"][n], yes["layers"][n]
        for q, text in (("norm2", "||w||^2"), ("lam_hat", "lambda_max(H(w_hat))"),
                        ("sharpness", "lr lambda_max(H(w))")):
            data["observations"].append(observation(
                f"BN MLP, end of training (step {no['step'][-1]}): {text}, with L2 (lam {c['lam']}) over without",
                FIGURE, n, b[q][-1] / a[q][-1], note=f"without L2: {a[q][-1]:.4g}, with: {b[q][-1]:.4g}"))
    cnn = data["tracks"]["cnn/L2"]
    for n, t in cnn["layers"].items():
        data["observations"].append(observation(
            f"BN CNN with L2: lr lambda_max(H(w)), last over first checkpoint (steps {cnn['step'][0]}-{cnn['step'][-1]})",
            FIGURE, n, t["sharpness"][-1] / t["sharpness"][0], note=f"first {t['sharpness'][0]:.4g}"))
    return data


def run(cfg=None, runner=None):
    """Experiment 10's data (see the module docstring)."""
    cfg = cfg or config.make_config()
    return analyze(cfg, (runner or Runner()).map(specs(cfg), desc=NAME))
