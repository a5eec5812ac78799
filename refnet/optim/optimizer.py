"""The optimizer base: parameter groups, per-parameter state, state dicts, and what SGD and
Adam share -- coupled L2, decoupled weight decay and the paper's unit-norm projection.

Conventions (DESIGN.md, binding):

- ``l2=lam`` is the paper's coupled L2: the loss gains ``lam * ||w||^2``, so the gradient
  gains ``2 * lam * w`` *before* momentum / Adam's moments see it (``_grad_with_l2``).
- ``weight_decay=wd`` is decoupled (AdamW): ``w <- (1 - lr * wd) * w``, applied apart from
  the gradient step, just before it (``_decoupled_decay``).
- Both apply only to parameters with ``p.decay`` True.
- ``unit_norm=True``: after every step each parameter with a ``scale_group`` is rescaled
  to norm 1, per output unit (rows along axis 0) for ``"unit"``, as a whole for
  ``"tensor"`` (``project``).

``state_dict()`` is PyTorch's layout, ``{"state": {index: {name: array, "step": int}},
"param_groups": [{option: value, "params": [indices]}]}``, holding only arrays and plain
Python values; ``flatten_state_dict`` splits it into ``.npz``-ready arrays plus JSON-ready
metadata and ``unflatten_state_dict`` joins them back.
"""

import math
import numbers

import numpy as np

from refnet import backend
from refnet.invariance import group_norms
from refnet.nn.module import Parameter


class Optimizer:
    """Holds ``param_groups`` (a list of dicts: ``"params"`` plus every option) and
    ``state`` (``{Parameter: {name: array or int}}``). Subclasses define ``_check_group``
    (validate and normalize a group's options), ``_update(p, group, state)`` and
    ``_state_keys`` (the array names their state holds)."""

    _state_keys = ()

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.state = {}
        self._scratch = {}
        self.param_groups = []
        seen = set()
        groups, grouped = _as_groups(type(self).__name__, params)
        for i, given in enumerate(groups):
            unknown = sorted(set(given) - set(defaults) - {"params"})
            if unknown:
                raise ValueError(f"{type(self).__name__}(params[{i}]): unknown option(s) {unknown}, "
                                 f"expected 'params' and any of {sorted(defaults)}")
            for p in given["params"]:
                if id(p) in seen:
                    raise ValueError(f"{type(self).__name__}(params): a parameter {p!r} appears "
                                     f"more than once")
                seen.add(id(p))
            group = {**self.defaults, **given, "params": list(given["params"])}
            where = _Where(type(self).__name__, i if grouped else None, given)
            self._check_group(group, where)
            self.param_groups.append(group)
        self._check_unit_norm()

    # --- the public API ------------------------------------------------------------
    def step(self):
        """One update of every parameter with a gradient and ``requires_grad`` (a frozen one is
        left alone, as in PyTorch), then the unit-norm projection."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None or not p.requires_grad:
                    continue
                if tuple(p.grad.shape) != tuple(p.data.shape):
                    raise ValueError(f"{type(self).__name__}.step(): {p!r} has a gradient of shape "
                                     f"{tuple(p.grad.shape)}, expected {tuple(p.data.shape)}")
                self._update(p, group, self.state.setdefault(p, {}))
            if group["unit_norm"]:
                self._project_group(group)

    def zero_grad(self):
        """Set every parameter's gradient to zero (Module.backward accumulates into it)."""
        for p in (p for group in self.param_groups for p in group["params"] if p.grad is not None):
            p.zero_grad()

    def project(self):
        """Rescale every scale group of the ``unit_norm`` groups to norm 1 now (``step``
        does this after each update; call it once before training to start on the sphere)."""
        for group in self.param_groups:
            if group["unit_norm"]:
                self._project_group(group)

    def state_dict(self):
        """Options and state as plain values and array copies, parameters by index."""
        index = {}
        groups = []
        for group in self.param_groups:
            packed = {k: _plain(v) for k, v in group.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        state = {index[id(p)]: {k: (int(v) if k == "step" else v.copy()) for k, v in entry.items()}
                 for p, entry in self.state.items() if entry}
        return {"state": dict(sorted(state.items())), "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore options and state saved by ``state_dict`` (arrays are copied onto each
        parameter's device and dtype), so that training continues bit for bit."""
        name = f"{type(self).__name__}.load_state_dict"
        saved = state_dict["param_groups"]
        if len(saved) != len(self.param_groups):
            raise ValueError(f"{name}(state_dict): has {len(saved)} parameter groups, "
                             f"expected {len(self.param_groups)}")
        params, new_groups = [], []
        for i, (old, new) in enumerate(zip(self.param_groups, saved)):
            if len(new["params"]) != len(old["params"]):
                raise ValueError(f"{name}(state_dict): group {i} has {len(new['params'])} parameters, "
                                 f"expected {len(old['params'])}")
            if set(new) != set(old):
                raise ValueError(f"{name}(state_dict): group {i} has options {sorted(new)}, "
                                 f"expected {sorted(old)}")
            group = {**new, "params": old["params"]}
            self._check_group(group, _Where(name, i, new))
            new_groups.append(group)
            params.extend(old["params"])
        state = {}
        for key, entry in state_dict["state"].items():
            i = int(key)
            if not 0 <= i < len(params):
                raise ValueError(f"{name}(state_dict): state for parameter {key}, expected indices "
                                 f"0..{len(params) - 1}")
            state[params[i]] = self._load_entry(name, i, params[i], entry)
        self.param_groups = new_groups
        self.state = state

    def __repr__(self):
        lines = [f"{type(self).__name__}("]
        for i, group in enumerate(self.param_groups):
            opts = ", ".join(f"{k}={v!r}" for k, v in group.items() if k != "params")
            lines.append(f"  group {i}: {len(group['params'])} parameters, {opts}")
        return "\n".join(lines) + "\n)"

    # --- shared pieces of the update -----------------------------------------------
    def _grad_with_l2(self, p, l2, out):
        """``g + 2 * l2 * w`` (coupled L2) in ``out``, or ``p.grad`` itself when no L2 applies."""
        if l2 == 0 or not p.decay:
            return p.grad
        backend.array_module(p.data).multiply(p.data, 2 * l2, out=out)
        out += p.grad
        return out

    def _decoupled_decay(self, p, lr, weight_decay):
        """``w <- (1 - lr * wd) * w`` in place, AdamW's order: before the gradient step."""
        if weight_decay != 0 and p.decay:
            p.data *= 1 - lr * weight_decay

    def _scratch_array(self, p, slot):
        """A reusable work array shaped like ``p`` (not part of the saved state)."""
        buf = self._scratch.get((id(p), slot))
        if buf is None or buf.shape != p.data.shape or buf.dtype != p.data.dtype \
                or type(buf) is not type(p.data):
            buf = backend.array_module(p.data).empty_like(p.data)
            self._scratch[(id(p), slot)] = buf
        return buf

    def _project_group(self, group):
        for p in group["params"]:
            if p.scale_group is None or not p.requires_grad:
                continue
            norms = group_norms(p)
            if not bool((norms > 0).all()):  # also catches NaN
                raise FloatingPointError(
                    f"{type(self).__name__}.step(): unit_norm cannot rescale {p!r}: a scale group has "
                    f"norm {backend.asnumpy(norms).min()!r}, expected a finite norm > 0")
            if p.scale_group == "unit":
                p.data /= norms.reshape((-1,) + (1,) * (p.data.ndim - 1))
            else:
                p.data /= norms.reshape((1,) * p.data.ndim)

    # --- validation ----------------------------------------------------------------
    def _check_group(self, group, where):
        raise NotImplementedError

    def _check_unit_norm(self):
        wanted = [p for g in self.param_groups if g["unit_norm"] for p in g["params"]]
        if wanted and all(p.scale_group is None for p in wanted):
            raise ValueError(
                f"{type(self).__name__}(unit_norm): got True, but none of the {len(wanted)} parameters "
                f"it applies to has a scale_group (all None); mark the scale-invariant weights first "
                f"(refnet.invariance.mark_scale_invariant(model)) or set unit_norm=False")

    def _load_entry(self, name, i, p, entry):
        unknown = sorted(set(entry) - set(self._state_keys) - {"step"})
        if unknown:
            raise ValueError(f"{name}(state_dict): parameter {i} has state {unknown}, expected "
                             f"{sorted(self._state_keys) + ['step']}")
        xp = backend.array_module(p.data)
        out = {}
        for k, v in entry.items():
            if k == "step":
                out[k] = int(v)
                continue
            if tuple(v.shape) != tuple(p.data.shape):
                raise ValueError(f"{name}(state_dict): state {k!r} of parameter {i} has shape "
                                 f"{tuple(v.shape)}, expected {tuple(p.data.shape)}")
            out[k] = xp.array(backend.asnumpy(v), dtype=p.data.dtype)
        return out


class _Where:
    """Names an option in error messages the way the user wrote it: ``SGD(lr)`` for a
    constructor argument, ``SGD(params[1]['lr'])`` for a param-group override."""

    def __init__(self, owner, group_index, given):
        self.owner, self.group_index, self.given = owner, group_index, given

    def __call__(self, option):
        if self.group_index is not None and option in self.given:
            return f"{self.owner}(params[{self.group_index}][{option!r}])"
        return f"{self.owner}({option})"


def _as_groups(owner, params):
    """``params`` (Parameters, or dicts with ``"params"``) as ``(group dicts, given as dicts)``."""
    if isinstance(params, (Parameter, dict)):
        raise TypeError(f"{owner}(params): got a single {type(params).__name__}, expected a list "
                        f"of Parameters or of param-group dicts")
    try:
        items = list(params)
    except TypeError:
        raise TypeError(f"{owner}(params): got {type(params).__name__}, expected a list of "
                        f"Parameters or of param-group dicts") from None
    if not items:
        raise ValueError(f"{owner}(params): got an empty list, expected at least one Parameter")
    is_dict = [isinstance(item, dict) for item in items]
    if any(is_dict) and not all(is_dict):
        raise TypeError(f"{owner}(params): got a mix of dicts and other objects, expected all "
                        f"Parameters or all param-group dicts")
    groups = items if all(is_dict) else [{"params": items}]
    out = []
    for i, group in enumerate(groups):
        where = f"params[{i}]['params']" if all(is_dict) else "params"
        if "params" not in group:
            raise ValueError(f"{owner}(params[{i}]): a param group needs a 'params' key")
        ps = group["params"]
        ps = [ps] if isinstance(ps, Parameter) else list(ps)
        if not ps:
            raise ValueError(f"{owner}({where}): got an empty list, expected at least one Parameter")
        for j, p in enumerate(ps):
            if not isinstance(p, Parameter):
                raise TypeError(f"{owner}({where}[{j}]): got {type(p).__name__}, "
                                f"expected a refnet.nn.Parameter")
        out.append({**group, "params": ps})
    return out, all(is_dict)


def check_real(where, name, value, low=0.0, high=None, high_open=False):
    """``value`` as a float, or a ValueError/TypeError naming the option and the range."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where(name)}: got {value!r}, expected a real number")
    value = float(value)
    too_high = high is not None and (value >= high if high_open else value > high)
    if not math.isfinite(value) or value < low or too_high:
        upper = "" if high is None else f" and {'<' if high_open else '<='} {high}"
        raise ValueError(f"{where(name)}: got {value!r}, expected a number >= {low}{upper}")
    return value


def check_bool(where, name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{where(name)}: got {value!r}, expected True or False")
    return bool(value)


def _plain(value):
    """Option values as JSON-ready Python types (tuples become lists)."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def flatten_state_dict(state_dict):
    """Split an optimizer ``state_dict`` into ``(arrays, meta)``: ``arrays`` maps names like
    ``"state.3.exp_avg"`` to numpy arrays (for ``np.savez``), ``meta`` is JSON-ready and
    refers to those names."""
    arrays, meta_state = {}, {}
    for i, entry in state_dict["state"].items():
        meta_entry = {}
        for k, v in entry.items():
            if k == "step":
                meta_entry[k] = int(v)
            else:
                meta_entry[k] = f"state.{int(i)}.{k}"
                arrays[meta_entry[k]] = np.array(backend.asnumpy(v))
        meta_state[str(int(i))] = meta_entry
    groups = [{k: _plain(v) for k, v in g.items()} for g in state_dict["param_groups"]]
    return arrays, {"state": meta_state, "param_groups": groups}


def unflatten_state_dict(arrays, meta):
    """Inverse of ``flatten_state_dict``: a ``state_dict`` for ``load_state_dict``."""
    state = {int(i): {k: (int(v) if k == "step" else arrays[v]) for k, v in entry.items()}
             for i, entry in meta["state"].items()}
    return {"state": state, "param_groups": [dict(g) for g in meta["param_groups"]]}
