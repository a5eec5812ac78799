"""The checker's power, measured: plant mutants in every built-in op and module and count
what the checker reports.

For every case of ``refnet.gradcheck.suite`` and every configuration (small inputs in full
and in directional mode, large inputs in directional mode; fast mode is measured apart),
the correct backward and every mutant of every argument (``refnet.gradcheck.mutants``) are
checked. Only ``failed`` counts as a detection; a correct backward must come out ``ok``
(``failed`` is a false alarm), and so must a control: one entry scaled by 1 + 0.3 rtol, an
error below the tolerance asked for (its twin, 1 + 10 rtol, is a mutant); ``inconclusive``
is counted on its own, for mutants, controls and correct backwards alike, so that a checker
that says inconclusive everywhere scores 0%.

The finite differences of one configuration are computed once and shared by its checks
(a mutant changes only the backward, never the function being differenced); the verdicts
are the same as from separate calls (``tests/test_gradcheck_power.py`` checks this).
"""

import json
import os
import tempfile
import time
import zlib

import numpy as np

from refnet import backend
from refnet.gradcheck import mutants as M
from refnet.gradcheck.check import FLOOR, RTOL
from refnet.gradcheck.inputs import checker_rng
from refnet.gradcheck.suite import CASES, make_case

CONFIGS = (("small", "full"), ("small", "directional"), ("large", "directional"))
FAST = ("small", "fast")


def power(cases=None, seeds=(0, 1, 2), configs=CONFIGS, fast=True, progress=None):
    """Run the campaign; returns {"cases": {name: rates}, "arguments": {name: {argument: rates}},
    "summary": rates, "checks": [one row per check], ...}.

    ``cases``: names of built-in cases (default all); ``seeds``: each draws new inputs,
    upstream gradients, probes and planted entries; ``configs``: (size, mode) pairs;
    ``fast``: also measure mode="fast" on the small inputs (reported apart: its lower power
    is expected); ``progress``: called with each case's name as it starts.
    """
    names = list(CASES) if cases is None else list(cases)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        raise ValueError(f"power(cases): unknown {unknown}, expected names from refnet.gradcheck.suite.CASES")
    checks = []
    for name in names:
        if progress:
            progress(name)
        for seed in seeds:
            for size, mode in list(configs) + ([FAST] if fast else []):
                checks += _run_config(name, seed, size, mode)
    per_case = {name: _rates([c for c in checks if c["case"] == name]) for name in names}
    by_argument = {}  # the mutants' rows, per case and argument
    for c in checks:
        if c["target"] != "-":
            by_argument.setdefault(c["case"], {}).setdefault(c["target"], []).append(c)
    per_argument = {name: {arg: _rates(rows) for arg, rows in args.items()} for name, args in by_argument.items()}
    return {"rtol": RTOL, "seeds": list(seeds), "configs": [list(c) for c in configs], "fast": fast,
            "cases": per_case, "arguments": per_argument, "summary": _rates(checks), "checks": checks}


def _rates(checks):
    """Detection, false-alarm and inconclusive rates: over full/directional, and fast apart."""
    def rates(chosen):
        skipped = [c for c in chosen if c["status"] == "not applicable"]
        chosen = [c for c in chosen if c["status"] != "not applicable"]
        mut = [c for c in chosen if not _must_pass(c)]
        ok = [c for c in chosen if c["mutant"] == "correct"]
        controls = [c for c in chosen if _must_pass(c) and c["mutant"] != "correct"]
        return {"mutants": len(mut), "not_applicable": len(skipped),
                "detected": sum(c["status"] == "failed" for c in mut),
                "correct": len(ok), "false_alarms": sum(c["status"] == "failed" for c in ok),
                "controls": len(controls), "controls_failed": sum(c["status"] == "failed" for c in controls),
                "inconclusive": sum(c["status"] == "inconclusive" for c in chosen),
                "detection_rate": _ratio(sum(c["status"] == "failed" for c in mut), len(mut)),
                "false_alarm_rate": _ratio(sum(c["status"] == "failed" for c in ok), len(ok)),
                "inconclusive_rate": _ratio(sum(c["status"] == "inconclusive" for c in chosen), len(chosen))}
    main = rates([c for c in checks if c["mode"] != "fast"])
    main["fast"] = rates([c for c in checks if c["mode"] == "fast"])
    return main


def _must_pass(row):
    """A correct backward, or a control (a change below the tolerance): failed is a false alarm."""
    return row["mutant"] == "correct" or row["mutant"].startswith(M.CONTROL)


def _ratio(k, n):
    return k / n if n else None


def _run_config(name, seed, size, mode):
    setup = make_case(name, seed, large=size == "large")
    opts = {"mode": mode, "seed": seed, "_fd_cache": {}}
    grads, dout = reference(setup, seed)
    rng = np.random.default_rng([seed, zlib.crc32(name.encode()), size == "large", 1])
    planted = []
    for arg in setup.names():
        planted += M.generic(arg, grads[arg].shape, setup.kinks.get(arg), rng)
    planted += M.structural(setup)
    if setup.kind == "module":
        planted += [("assigns (=) instead of adding (+=)", n, None) for n in setup.names()[1:]]
    rows = [_row(name, seed, size, mode, "correct", "-", setup.check(**opts))]
    biggest = max(float(np.abs(g).max(initial=0.0)) for g in grads.values())
    for label, target, change in planted:
        control = label.startswith(M.CONTROL)
        if change is not None and not control and \
                not _an_error(grads[target], change(grads[target].copy(), grads, dout), biggest):
            rows.append({"case": name, "seed": seed, "size": size, "mode": mode, "mutant": label,
                         "target": target, "status": "not applicable", "failing": []})
            continue
        report = _mutated(setup, target, change).check(**opts)
        if setup.kind == "module":
            setup.fn.__dict__.pop("backward", None)
        rows.append(_row(name, seed, size, mode, label, target, report))
    return rows


def _an_error(right, wrong, biggest):
    """Whether ``wrong`` differs from ``right`` by at least 5x the tolerance the checks are
    asked for, rtol * max(|g_j|, FLOOR * max|g|, FLOOR^2 * the largest gradient of any
    argument), in some entry (the near-threshold mutant is 10x). A gradient that is zero up to
    rounding (a bias before BatchNorm) scaled by 1.001 or transposed is not wrong at any
    tolerance: it is left out, and listed."""
    scale = np.maximum(np.abs(right), max(FLOOR * float(np.abs(right).max(initial=0.0)), FLOOR ** 2 * biggest))
    return bool(np.any(np.abs(wrong - right) >= 5 * RTOL * scale))


def _row(name, seed, size, mode, mutant, target, report):
    failing = sorted(n for n, c in report.errors.items() if c.status == "failed")
    return {"case": name, "seed": seed, "size": size, "mode": mode, "mutant": mutant, "target": target,
            "status": report.status, "failing": failing + (["(problem)"] if report.problems else [])}


def reference(setup, seed):
    """The right gradients {name: array} for the checker's own upstream gradient, and it."""
    rng = checker_rng(seed)
    if setup.kind == "loss":
        loss, dlogits = setup.fn(*setup.args)
        dloss = rng.standard_normal(np.shape(loss))
        return {"logits": backend.asnumpy(dloss * dlogits)}, dloss
    if setup.kind == "op":
        out, cache = setup.fn[0](*setup.args, **setup.kwargs)
        dout = rng.standard_normal(np.shape(out))
        grads = setup.fn[1](dout, cache)
        grads = grads if isinstance(grads, tuple) else (grads,)
        return {n: backend.asnumpy(g) for n, g in zip(setup.names(), [g for g, a in zip(grads, setup.args)
                                                                         if a is not None])}, dout
    module, x = setup.fn, setup.args[0]
    state, saved = module.state_dict(), [p.grad.copy() for p in module.parameters()]
    module.zero_grad()
    dout = rng.standard_normal(module(x).shape)
    grads = {"x": module.backward(dout)}
    grads.update((n, p.grad.copy()) for n, p in module.named_parameters())
    module.load_state_dict(state)
    for p, g in zip(module.parameters(), saved):
        p.grad[...] = g
    return grads, dout


def _mutated(setup, target, change):
    """The Setup with its backward changed for ``target`` (the module's, patched in place)."""
    from refnet.gradcheck.suite import Setup
    if setup.kind == "loss":
        fn = setup.fn

        def loss_fn(logits, labels):
            loss, dlogits = fn(logits, labels)
            return loss, change(dlogits.copy(), {"logits": dlogits}, 1.0)
        return Setup("loss", loss_fn, setup.args)
    if setup.kind == "op":
        forward, backward = setup.fn
        names = setup.names()
        k = [i for i, a in enumerate(setup.args) if a is not None][names.index(target)]

        def mutated(dout, cache):
            grads = backward(dout, cache)
            single = not isinstance(grads, tuple)
            grads = list((grads,) if single else grads)
            by_name = dict(zip(names, [g for g, a in zip(grads, setup.args) if a is not None]))
            grads[k] = change(grads[k].copy(), by_name, dout)
            return grads[0] if single else tuple(grads)
        return Setup("op", (forward, mutated), setup.args, setup.kwargs, setup.kinks)
    _patch_module(setup.fn, target, change)
    return setup


def _patch_module(module, target, change):
    """module.backward, wrapped: its fresh gradient of ``target`` changed (or, with change
    None, ``target``'s .grad assigned instead of added to)."""
    inner = type(module).backward.__get__(module)
    params = dict(module.named_parameters())

    def backward(dy):
        before = {n: p.grad.copy() for n, p in params.items()}
        for p in params.values():
            p.grad[...] = 0
        dx = inner(dy)
        fresh = {"x": dx, **{n: p.grad.copy() for n, p in params.items()}}
        if change is not None:
            fresh[target] = change(fresh[target].copy(), fresh, dy)
        for n, p in params.items():
            p.grad[...] = fresh[n] + (0 if change is None and n == target else before[n])
        return fresh["x"]
    object.__setattr__(module, "backward", backward)


# --- output ------------------------------------------------------------------------------
def write_json(result, path):
    """Write atomically: a temporary file in the same folder, then renamed over ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".power-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(result, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def table(result):
    """The per-case table, as printed by ``refnet gradcheck --power`` and shown in the README."""
    def pct(x):
        return "-" if x is None else f"{100 * x:.0f}%"
    rows = [("case", "mutants", "detected", "false alarms", "controls failed", "inconclusive", "fast mode: detected")]
    for name, r in list(result["cases"].items()) + [("all", result["summary"])]:
        rows.append((name, str(r["mutants"]), pct(r["detection_rate"]),
                     f"{pct(r['false_alarm_rate'])} ({r['false_alarms']}/{r['correct']})",
                     f"{r['controls_failed']}/{r['controls']}",
                     pct(r["inconclusive_rate"]), pct(r["fast"]["detection_rate"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(s.ljust(w) for s, w in zip(r, widths)).rstrip() for r in rows)


def timed(fn, *args, **kwargs):
    """(result, wall seconds, CPU seconds of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - wall, time.process_time() - cpu
