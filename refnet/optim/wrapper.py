"""What the two norm-fixing wrappers (``Rotational``, ``Hyperball``) share: an inner optimizer
that proposes each step, the scale-invariant weights whose move the wrapper replaces, their
per-scale-group bookkeeping, and state dicts that hold both.

One step: remember every wrapped weight ``w`` (a parameter with a ``scale_group``), let the
inner optimizer step with weight decay and L2 switched off for those weights (the wrapper's
fixed norm takes decay's place), read the inner's proposal ``u`` (the step without ``-lr``),
and let the wrapper's ``_move`` set the new ``w``. With decay off, no inner optimizer's step
depends on ``w`` (SGD, Adam, Lion, Muon: their moments see only the gradient), so the inner
step runs from ``w = 0`` and ``u = -w_after / lr`` exactly: reading it as
``(w - w_after) / lr`` would lose a small step to rounding in float32 (``w - lr u`` rounds
to ``w``) and the wrapper would normalize the rounding residue into a full step. Parameters
without a scale group get the inner optimizer's plain step, decay included.
"""

from contextlib import contextmanager

from refnet import backend
from refnet.optim.optimizer import _plain, check_real


def rows(a, scale_group):
    """``a`` as ``(groups, entries)``: one row per output unit (``"unit"``) or one row (``"tensor"``)."""
    return a.reshape(a.shape[0], -1) if scale_group == "unit" else a.reshape(1, -1)


def row_norms(a):
    """``||row||`` of a 2-D array, as a column ``(groups, 1)``."""
    xp = backend.array_module(a)
    return xp.sqrt((a * a).sum(axis=1, keepdims=True))


@contextmanager
def decay_off(params):
    """Switch ``p.decay`` off for ``params`` inside the block (the inner step's L2 and decay)."""
    saved = [(p, p.decay) for p in params]
    try:
        for p in params:
            p.decay = False
        yield
    finally:
        for p, decay in saved:
            p.decay = decay


class Wrapper:
    """Base of ``Rotational`` and ``Hyperball``. Subclasses define ``_prefix`` (the state-dict
    key prefix), ``_state_keys`` (their per-parameter array names), ``_options_saved`` and
    ``_check_options(where, options)`` (their options, checked), ``_start(p, w, state)`` (first
    step of a weight; may edit ``w``, a copy) and ``_move(p, w, u, group, state)`` (set ``p.data`` from the weight
    before the step, ``w``, and the inner's proposal ``u``, both ``(groups, entries)``)."""

    _prefix = ""
    _state_keys = ()
    _options_saved = ("eps",)  # attributes saved in every param group as ``_prefix + name``

    def __init__(self, inner, eps):
        name = type(self).__name__
        if isinstance(inner, Wrapper) or not hasattr(inner, "param_groups") or not hasattr(inner, "_update"):
            raise TypeError(f"{name}(inner): got {type(inner).__name__}, expected a refnet optimizer "
                            f"(SGD, Adam, Lion, Muon)")
        if any(g.get("unit_norm") for g in inner.param_groups):
            raise ValueError(f"{name}(inner): the inner optimizer has unit_norm=True; the wrapper sets "
                             f"the norm itself, so build the inner one with unit_norm=False")
        self.inner = inner
        self.eps = check_real(lambda option: f"{name}({option})", "eps", eps)  # before the subclass's checks
        self.state = {}
        if not self.wrapped():
            raise ValueError(f"{name}(inner): none of the inner optimizer's parameters has a scale_group; "
                             f"mark the scale-invariant weights first "
                             f"(refnet.invariance.mark_scale_invariant(model))")

    @property
    def param_groups(self):
        """The inner optimizer's groups (the trainer's schedules set their ``lr``)."""
        return self.inner.param_groups

    def wrapped(self):
        """The scale-invariant parameters whose move the wrapper sets (``requires_grad`` ones)."""
        return [p for g in self.inner.param_groups for p in g["params"]
                if p.scale_group is not None and getattr(p, "requires_grad", True)]

    def step(self):
        """The inner step for every parameter, then the wrapper's move for the wrapped ones."""
        held = [p for p in self.wrapped() if p.grad is not None]
        for p in held:
            self._check_norms(p)
        before = {id(p): p.data.copy() for p in held}
        for p in held:  # the proposal from 0: see the module docstring
            p.data[...] = 0
        try:
            with decay_off(held):
                self.inner.step()
        except BaseException:
            for p in held:
                p.data[...] = before[id(p)]
            raise
        for group in self.inner.param_groups:
            for p in group["params"]:
                if id(p) not in before:
                    continue
                w = before[id(p)]
                if group["lr"] == 0:  # no proposal to read: stay
                    p.data[...] = w
                    continue
                u = rows(-p.data / group["lr"], p.scale_group)
                w = rows(w, p.scale_group)
                state = self.state.setdefault(p, {})
                if not state:
                    self._start(p, w, state)
                self._move(p, w, u, group, state)

    def _check_norms(self, p):
        """Refuse a scale group of norm 0 or NaN before stepping (it has no direction to turn)."""
        norms = row_norms(rows(p.data, p.scale_group))
        if not bool((norms > 0).all()):  # also catches NaN
            raise FloatingPointError(
                f"{type(self).__name__}.step(): cannot rescale {p!r}: a scale group has norm "
                f"{float(backend.asnumpy(norms).min())!r}, expected a finite norm > 0")

    def zero_grad(self):
        self.inner.zero_grad()

    # --- state dicts: the inner's, with the wrapper's entries under prefixed keys ------------
    def state_dict(self):
        out = self.inner.state_dict()
        index = {id(p): i for i, p in enumerate(p for g in self.inner.param_groups for p in g["params"])}
        for p, entry in self.state.items():
            mine = {self._prefix + k: (int(v) if k == "step" else v.copy()) for k, v in entry.items()}
            out["state"].setdefault(index[id(p)], {}).update(mine)
        out["state"] = dict(sorted(out["state"].items()))
        for group in out["param_groups"]:  # the wrapper's options ride along, as the inner's do
            group.update({self._prefix + k: _plain(getattr(self, k)) for k in self._options_saved})
        return out

    def load_state_dict(self, state_dict):
        """Restore the inner optimizer's options and state, the wrapper's per-parameter state,
        and the wrapper's own options (saved in each param group under ``_prefix``), as the
        base optimizers restore their hyperparameters."""
        name = f"{type(self).__name__}.load_state_dict"
        keys = [self._prefix + k for k in self._options_saved]
        inner_groups, saved = [], None
        for i, group in enumerate(state_dict["param_groups"]):
            missing = [k for k in keys if k not in group]
            if missing:
                raise ValueError(f"{name}(state_dict): group {i} lacks the wrapper's options {missing}; "
                                 f"expected a state_dict of {type(self).__name__}, not of its inner optimizer")
            mine_here = {k: group[self._prefix + k] for k in self._options_saved}
            if saved is not None and mine_here != saved:
                raise ValueError(f"{name}(state_dict): group {i} has wrapper options {mine_here}, "
                                 f"group 0 {saved}; expected the same in every group")
            saved = mine_here
            inner_groups.append({k: v for k, v in group.items() if k not in keys})
        options = self._check_options(lambda option: f"{name}(state_dict): {self._prefix}{option}",
                                      dict(saved or {}))
        inner_state, mine = {}, {}
        for key, entry in state_dict["state"].items():
            inner_state[key] = {k: v for k, v in entry.items() if not k.startswith(self._prefix)}
            ours = {k[len(self._prefix):]: v for k, v in entry.items() if k.startswith(self._prefix)}
            if ours:
                mine[int(key)] = ours
        self.inner.load_state_dict({"state": {k: v for k, v in inner_state.items() if v},
                                    "param_groups": inner_groups})
        params = [p for g in self.inner.param_groups for p in g["params"]]
        state = {}
        for i, entry in mine.items():
            p = params[i]
            expected = set(self._state_keys) | {"step"}
            if p.scale_group is None or set(entry) - expected:
                raise ValueError(f"{name}(state_dict): parameter {i} has wrapper state {sorted(entry)}, "
                                 f"expected {sorted(expected)} on a parameter with a scale_group")
            groups = rows(p.data, p.scale_group).shape[0]
            xp = backend.array_module(p.data)
            state[p] = {}
            for k, v in entry.items():
                if k == "step":
                    state[p][k] = int(v)
                    continue
                if tuple(v.shape) != (groups, 1):
                    raise ValueError(f"{name}(state_dict): state {self._prefix + k!r} of parameter {i} has "
                                     f"shape {tuple(v.shape)}, expected {(groups, 1)}")
                state[p][k] = xp.array(backend.asnumpy(v), dtype=p.data.dtype)
        self.state = state
        for k, v in options.items():
            setattr(self, k, v)
        self._check_after_load(name)

    def __repr__(self):
        return f"{type(self).__name__}({self._options()},\n inner={self.inner!r})"

    def _options(self):
        return f"eps={self.eps!r}"

    def _check_options(self, where, options):
        """``options`` (name -> value, the names in ``_options_saved``) checked, as the constructor does."""
        return {"eps": check_real(where, "eps", options["eps"])}

    def _check_after_load(self, name):
        """Whatever the restored options and inner groups must satisfy together."""

    def _start(self, p, w, state):
        raise NotImplementedError

    def _move(self, p, w, u, group, state):
        raise NotImplementedError
