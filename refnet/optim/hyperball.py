"""Hyperball (Wen, Dang, Lyu, Ma, Liang 2026, "Fantastic Pretraining Optimizers and Where to Find
Them II: Hyperball Optimization"): the weight's norm and the update's norm both held fixed, so
that ``lr`` sets the angle per step and weight decay has no role -- the modern form of the
paper's unit-norm projection."""

from refnet.optim.optimizer import check_real
from refnet.optim.wrapper import Wrapper, row_norms


class Hyperball(Wrapper):
    """Fixed-norm steps of length ``lr * R`` on the sphere of radius ``R``.

    Per scale group ``w`` of radius ``R`` (its norm at the first step, or ``radius``), with
    ``u`` the inner optimizer's proposed step (without ``-lr`` and without decay)::

        w = R * normalize(w - lr * R * normalize(u)),    normalize(x) = x / ||x||

    so ``tan(angle) = lr sin(phi) / (1 - lr cos(phi))`` with ``phi`` the angle between ``u``
    and ``w``: ``atan(lr)`` exactly when ``u`` is orthogonal to ``w`` (plain SGD on a
    scale-invariant weight), close to it when momentum gives ``u`` a small radial part
    (theory/README.md, section 18). ``lr`` is the angle, ``R`` and weight decay drop out.

    Wen et al. fix each weight matrix's Frobenius norm; refnet fixes each scale group's norm:
    per output unit for BN- and WN-fed weights (``scale_group="unit"``), per tensor for
    LN-fed ones (``"tensor"``), since that is the scale the loss ignores. Parameters without
    a scale group take the inner's plain step, decay included; the inner's decay on the
    wrapped weights is not applied. ``eps`` guards the division by ``||u||`` (a zero proposal
    leaves ``w`` where it is). State per wrapped parameter: ``hyperball_radius``, ``(groups, 1)``;
    the options ``radius`` and ``eps`` are saved in each param group (``hyperball_radius``,
    ``hyperball_eps``) and restored by ``load_state_dict``.
    """

    _prefix = "hyperball_"
    _state_keys = ("radius",)

    def __init__(self, inner, radius=None, eps=1e-30):
        super().__init__(inner, eps)
        self.radius = self._check_options(lambda option: f"Hyperball({option})",
                                          dict(radius=radius, eps=self.eps))["radius"]

    _options_saved = ("radius", "eps")

    def _check_options(self, where, options):
        radius = options["radius"]
        radius = None if radius is None else check_real(where, "radius", radius)
        if radius == 0:
            raise ValueError(f"{where('radius')}: got 0.0, expected a radius > 0 (or None: each "
                             f"group's initial norm)")
        return {"radius": radius, "eps": check_real(where, "eps", options["eps"])}

    def _start(self, p, w, state):
        norms = row_norms(w)
        state["radius"] = norms if self.radius is None else 0 * norms + self.radius

    def _move(self, p, w, u, group, state):
        radius = state["radius"]
        moved = w - group["lr"] * radius * u / (row_norms(u) + self.eps)
        p.data[...] = (radius * moved / row_norms(moved)).reshape(p.data.shape)

    def _options(self):
        return f"radius={self.radius!r}, eps={self.eps!r}"
