"""The engine: an analytic linear map against central differences, one argument at a time.

``check_argument(name, data, evaluate, analytic, ...)`` perturbs ``data`` in place along
probe directions d (restoring it exactly), differences the scalar ``evaluate()`` and compares
with ``analytic.apply(d)``. It knows nothing about ops, modules or backward passes, so any
check of the form "this code claims the directional derivative of F along d is A(d)" plugs
in: a gradient (A(d) = <g, d>), a JVP (A(d) = <c, J d>), a Hessian-vector product.

A probe is (support, weights): flat indices and weights, +-1 on a block (so that one wrong
entry shows undiminished), Gaussian on a dense direction (so that two wrong entries cannot
cancel exactly, as a swapped pair does under +-1 half the time). At step h it costs six
evaluations of phi(t) = F(x + t d), at t = +-h, +-2h, +-4h (phi(0) = f0 is shared):

    c_k = (phi(kh) - phi(-kh)) / 2kh                 central differences, k = 1, 2, 4
    r1 = (4 c1 - c2) / 3,  r2 = (4 c2 - c4) / 3      Richardson: truncation O(h^4)
    c  = r1 + (r1 - r2) / 15                         once more: O(h^6)
    trunc = |r1 - r2| / 15                           the error of r1, far more than c's
    noise = 3 delta / h                              delta: rounding noise of one evaluation

delta is measured, not assumed: at a step h_n = NOISE_STEP * h far below the judged ones,
M = 16 (phi(h_n) - phi(-h_n)) - 10 (phi(2h_n) - phi(-2h_n)) + phi(4h_n) - phi(-4h_n) cancels
phi's odd Taylor terms up to h_n^3 and has no even part, so neither curvature nor a kink at
the point (|t| is even) reaches it: it is rounding alone, of standard deviation sqrt(714)
delta. delta is the median of |M| / 18.0 over up to POOL of the argument's first probes (at
least MIN_POOL), never less than an ulp of f0 or the difference of two evaluations at x.
A probe's own N6 = phi(4h) + phi(-4h) - 20 (phi(2h) + phi(-2h)) + 64 (phi(h) + phi(-h)) - 90 f0
(rounding alone for a smooth phi, of standard deviation sqrt(17094) delta) raises its noise
where it is noisier than the pool.

Smooth or not: with the slope jumps j_k = (phi(kh) - 2 f0 + phi(-kh)) / kh, a smooth phi has
e2 = 8 e1 (e1 = j2 - 2 j1, e2 = j4 - 2 j2) and d2 = 4 d1 (d1 = c2 - c1, d2 = c4 - c2). A kink
inside the step breaks one of the two wherever it sits; then trunc = |r1 - r2| and the noise
becomes max(noise, |e1|, |e2|), which bounds c's error for one kink anywhere in +-4h
(tests/test_gradcheck_engine.py sweeps it). u = trunc + noise.

A kink at the point, or within about h/4 of it, shows the same jump at h, 2h and 4h: a probe
of several entries is then split in halves, recursively, until the kink entries are isolated.
For one entry the step shrinks by KINK_SHRINK until the kink is outside it (an entry 1e-8
from a ReLU's kink is judged at a step below 1e-8) or until the step is as short as the
rounding noise allows (3 delta / h = tol / 4); only then is the entry excluded, listed as at
or within that step of a kink. Every other entry is judged. Otherwise the step adapts
until u <= tol / 4 (tol = rtol * s): by the factor that balances trunc ~ h^4 against noise
~ 1/h, by 1/8 where phi is not smooth in the step, at most MAX_TRIES steps; a probe that
stays too curved for its tolerance is split too.

The scale of an entry is s_j = max(|a_j|, floor * max|a|, floor_abs) (a_j = A(e_j)); a probe
is judged against its smallest entry's scale s = min s_j, so a small entry is never diluted
by a large one beside it. With err = |A(d) - c|:

    failed         err > tol + 2 u       (no noise explains it)
    ok             err + u <= tol  and  resolution 3 u / s <= rtol
    inconclusive   otherwise

The resolution, 3 u / s, is the smallest error in one entry, relative to its scale, that
would come out failed at rtol -> 0. An argument is ok only when every probe is ok and every
entry that is not a kink lies in one. Full mode probes every entry alone (e_j); directional
mode probes <= MAX_BLOCKS random disjoint +-1 blocks covering every entry, then N_DENSE
Gaussian directions over the entries that are not kinks; fast mode one Gaussian direction.
A probe of several entries whose error exceeds its tolerance (failed, or inconclusive
because of the error) by less than sum_j |w_j| rtol s_j (what entries each within their own
tolerance could add up to) is split until it is clear; a failed probe of several entries is
bisected to the entry responsible.
"""

import numpy as np

from refnet import backend
from refnet.gradcheck.report import ArgCheck, combined_status

EPS = float(np.finfo(np.float64).eps)
MAX_BLOCKS = 256   # block directions in directional mode
N_DENSE = 4        # dense random directions in directional mode
MAX_TRIES = 8      # steps tried per probe (h, then the step that balances truncation and noise)
MIN_POOL = 8       # probes at least behind the pooled rounding noise
POOL = 32          # probes at most behind it (a median of 32 is within ~25%)
NOISE_STEP = 1e-3  # the pooled noise is measured at this fraction of the first step
KINK_SHRINK = 1e-2  # a kink seen within the step h is looked for again at h * this, ...
KINK_STEPS = 6      # ... at most this many times, before the entry is excluded
_MEDIAN_ABS_N6 = 0.674 * np.sqrt(17094.0)  # median |N6| of pure rounding noise, in units of delta
_MEDIAN_ABS_M = 0.674 * np.sqrt(714.0)     # the same for the odd combination M (pool_noise)


class LinearMap:
    """The analytic side: ``apply(support, weights) -> float`` (the claimed directional
    derivative along the probe) and ``magnitudes`` (|A(e_j)| per entry, for the scales)."""

    def __init__(self, apply, magnitudes):
        self.apply, self.magnitudes = apply, np.asarray(magnitudes, dtype=np.float64)

    @classmethod
    def from_gradient(cls, grad):
        flat = np.asarray(grad, dtype=np.float64).reshape(-1)
        return cls(lambda support, weights: float(flat[support] @ weights), np.abs(flat))


class _Probe:
    __slots__ = ("support", "weights", "dense")

    def __init__(self, support, weights, dense=False):
        self.support, self.weights, self.dense = support, weights, dense

    @property
    def size(self):
        return self.support.size

    def halves(self):
        k = self.size // 2
        return (_Probe(self.support[:k], self.weights[:k], self.dense),
                _Probe(self.support[k:], self.weights[k:], self.dense))


class _Measured:
    """One probe at one step h: the estimate c and its uncertainty u = trunc + rough."""
    __slots__ = ("h", "c", "trunc", "rough", "noise", "smooth", "j1", "j2", "j4")

    def __init__(self, values, f0, h, delta):
        p1, m1, p2, m2, p4, m4 = values
        c1, c2, c4 = (p1 - m1) / (2 * h), (p2 - m2) / (4 * h), (p4 - m4) / (8 * h)
        r1, r2 = (4 * c1 - c2) / 3, (4 * c2 - c4) / 3     # Richardson, O(h^4)
        self.h, self.c = h, r1 + (r1 - r2) / 15            # and once more, O(h^6)
        self.noise = 3 * delta / h                         # rounding, from the pooled delta
        self.j1, self.j2, self.j4 = (p1 - 2 * f0 + m1) / h, (p2 - 2 * f0 + m2) / (2 * h), \
            (p4 - 2 * f0 + m4) / (4 * h)
        # A smooth phi has e2 = 8 e1 (its even part) and d2 = 4 d1 (its odd part), up to O(h^2)
        # and noise; a kink inside the step breaks one of the two wherever it sits.
        e1, e2, d1, d2 = self.j2 - 2 * self.j1, self.j4 - 2 * self.j2, c2 - c1, c4 - c2
        self.smooth = _ratio_holds(e1, e2, 8, self.noise) and _ratio_holds(d1, d2, 4, self.noise)
        if self.smooth:  # own: this probe's rounding, if more than the pool's (one sample of N6)
            own = 3 * abs(p4 + m4 - 20 * (p2 + m2) + 64 * (p1 + m1) - 90 * f0) / (_MEDIAN_ABS_N6 * h)
            self.trunc, self.rough = abs(r1 - r2) / 15, max(self.noise, own)  # r1's error: more than c's
        else:  # bounds the error of c for one kink anywhere in the step (tests/test_gradcheck_engine.py)
            self.trunc, self.rough = abs(r1 - r2), max(self.noise, abs(e1), abs(e2))

    @property
    def u(self):
        return self.trunc + self.rough

    def kink_like(self, tol):
        """The same jump in slope at h, 2h and 4h: a kink at the point itself."""
        j = abs(self.j1)
        same = max(abs(self.j2 - self.j1), abs(self.j4 - self.j1)) <= 0.25 * j
        return same and j > max(10 * self.noise, 0.1 * tol)


def verdict(err, u, tol):
    """failed: no noise explains err; ok: within tol with room for the noise; else inconclusive."""
    return "failed" if err > tol + 2 * u else ("ok" if err + u <= tol and 3 * u <= tol else "inconclusive")


def _ratio_holds(small, big, ratio, noise):
    return max(abs(small), abs(big)) <= 4 * noise or abs(big - ratio * small) <= 0.3 * abs(big)


class _Engine:
    def __init__(self, name, data, evaluate, analytic, f0, rtol, floor, floor_abs, step, cache):
        self.name, self.data, self.evaluate, self.f0 = name, data, evaluate, f0
        self.xp = backend.array_module(data)
        self.analytic, self.rtol, self.cache = analytic, rtol, cache
        mags = analytic.magnitudes.reshape(-1)
        self.scale = np.maximum(mags, max(floor * float(mags.max(initial=0.0)), floor_abs, 1e-300))
        # x + h must move x by h to ~1e-10 relative, whatever the size of x
        self.h0 = max(step, 1e-6 * float(np.abs(backend.asnumpy(data)).max(initial=0.0)))
        self.delta = EPS * abs(f0)
        self.kinks, self.covered, self.kink_step = [], np.zeros(data.size, dtype=bool), 0.0
        self.judged = []  # (probe, err, u, s)
        self.n_probes = 0

    # --- evaluations ---------------------------------------------------------------
    def values(self, probe, h):
        """phi at h, -h, 2h, -2h, 4h, -4h: data perturbed in place, then restored."""
        key = (self.name, h, probe.support.tobytes(), probe.weights.tobytes())
        if key in self.cache:
            return self.cache[key]
        xp, data = self.xp, self.data
        idx = tuple(xp.asarray(i) for i in np.unravel_index(probe.support, data.shape))
        orig, w = data[idx].copy(), xp.asarray(probe.weights)
        out = []
        try:
            for t in (h, -h, 2 * h, -2 * h, 4 * h, -4 * h):
                data[idx] = orig + t * w
                out.append(float(self.evaluate()))
        finally:
            data[idx] = orig
        if not np.all(np.isfinite(out)):
            where = np.unravel_index(int(probe.support[0]), data.shape)
            raise ValueError(f"gradcheck: the function became non-finite ({out}) when {self.name!r} "
                             f"was perturbed by up to {4 * h:.1e} along a probe of {probe.size} "
                             f"entr{'y' if probe.size == 1 else 'ies'} (the first at {tuple(map(int, where))}); "
                             f"check it at points where it is finite nearby, or pass a smaller step")
        self.cache[key] = out
        self.n_probes += 1
        return out

    def measure(self, probe, h):
        return _Measured(self.values(probe, h), self.f0, h, self.delta)

    def pool_noise(self, probes, rng):
        """delta: the rounding noise of one evaluation, measured on up to POOL probes.

        At a step h_n = NOISE_STEP * h0, far below any step a probe is judged at,
        M = 16 (phi(h_n) - phi(-h_n)) - 10 (phi(2h_n) - phi(-2h_n)) + (phi(4h_n) - phi(-4h_n))
        cancels phi's odd Taylor terms up to h_n^3 (what is left, 12 h_n^5 phi^(5), is far
        below rounding), and it holds no even part at all, so a kink at the point (a ReLU
        input at 0, a tie in a max-pool window: |t| is even) leaves it untouched. It is
        rounding alone, of standard deviation sqrt(714) delta; the median of |M| over the
        probes, / 18.0, estimates delta. Kinks near the point, not at it, are the only thing
        that can still reach M, and the tiny step keeps them to a few probes, which the median
        ignores. (Measured at the probes' own step, most blocks of a large input full of kinks
        hold a kink within the step, and their slope jumps once read as noise 1e8 times too
        large: the step then grew over more kinks and correct backwards failed.)
        With fewer than MIN_POOL probes (fast mode, a small argument), random dense directions
        are added to the pool: a median of one or two samples could be far too small.
        """
        n = self.data.size
        pool = list(probes)
        if len(pool) > POOL:
            pool = [pool[i] for i in np.sort(rng.choice(len(pool), POOL, replace=False))]
        pool += [_Probe(np.arange(n), rng.standard_normal(n), dense=True) for _ in range(MIN_POOL - len(pool))]
        h = self.h0 * NOISE_STEP
        odd = []
        for p in pool:
            p1, m1, p2, m2, p4, m4 = self.values(p, h)
            odd.append(abs(16 * (p1 - m1) - 10 * (p2 - m2) + (p4 - m4)))
        self.delta = max(self.delta, float(np.median(odd)) / _MEDIAN_ABS_M)

    # --- one probe -------------------------------------------------------------------
    def tolerance(self, probe):
        s = float(self.scale[probe.support].min())
        return s, self.rtol * s

    def resolve(self, probe):
        """("judged", Measured, near) | ("kink", near) | ("split", None) for one probe; near:
        the shortest step at which a kink was still seen within the step (None: no kink)."""
        s, tol = self.tolerance(probe)
        h, h_max, near, tries = self.h0, np.inf, None, []
        for _ in range(MAX_TRIES):
            m = self.measure(probe, h)
            if m.kink_like(tol):
                if probe.size > 1:
                    return "split", None
                near, m = self.shrink_past_kink(probe, h, tol)
                if m is None:
                    return "kink", near
                h = h_max = m.h  # a longer step would straddle the kink again
            tries.append(m)
            if m.u <= tol / 4:
                break
            # Smooth: u(h') ~ trunc (h'/h)^4 + noise h/h', least at h' = h (noise / 4 trunc)^(1/5).
            # (trunc below 0.2 noise is rounding itself: |r1 - r2| / 5 of pure noise is ~ 0.07 noise.)
            factor = 1 / 8 if not m.smooth else (
                4.0 if m.trunc <= 0.2 * m.noise else min(8.0, (m.noise / (4 * m.trunc)) ** 0.2))
            if 0.8 < factor < 1.25 and m.smooth:
                break  # already at the best step: more tries cannot lower u
            h, was = min(h * max(factor, 1 / 8), h_max), h
            if h == was:
                break
        best = min(tries, key=lambda t: t.u)
        if best.u > tol / 2 and (not best.smooth or best.trunc >= best.rough) and probe.size > 1:
            return "split", None  # not smooth, or curved too much along d: fewer entries help
        return "judged", best, near

    def shrink_past_kink(self, probe, h, tol):
        """A kink seen within the step h of one entry (the same slope jump at h, 2h, 4h): shrink
        the step by KINK_SHRINK until the kink is no longer inside it, (h, Measured at the
        shorter step), or until the step is as short as the rounding noise allows anything to
        be judged (3 delta / h = tol / 4), (h, None): then the entry is excluded, at or within
        h of a kink.
        An entry at 1e-8 from a ReLU's kink is judged at a step below 1e-8, not excluded."""
        h_min = 12 * self.delta / tol
        for _ in range(KINK_STEPS):
            shorter = max(h * KINK_SHRINK, h_min)
            if shorter >= h:
                break
            m = self.measure(probe, shorter)
            if not m.kink_like(tol):
                return h, m
            h = shorter
        return h, None

    def run(self, probe):
        """Judge a probe, splitting it around kinks; records kinks, coverage and verdicts.

        An entry judged only after the step shrank past a kink, whose verdict is still
        inconclusive at that step, is excluded like a kink (at or within that step of one)."""
        stack = [probe]
        while stack:
            p = stack.pop()
            what, m, *near = self.resolve(p)
            if what == "split":
                stack.extend(p.halves())
            elif what == "kink":
                self.exclude(p, m)
            else:
                s, tol = self.tolerance(p)
                err = abs(self.analytic.apply(p.support, p.weights) - m.c)
                status = verdict(err, m.u, tol)
                if near[0] is not None and status == "inconclusive":
                    self.exclude(p, near[0])
                elif p.size > 1 and status != "ok" and err + m.u > tol and err <= self.within_each(p) + 2 * m.u:
                    stack.extend(p.halves())  # each entry may be within its own tolerance: judge apart
                else:
                    self.judged.append((p, err, m.u, s))

    def within_each(self, probe):
        """The largest disagreement of a probe whose every entry is off by at most its own
        tolerance, rtol * s_j: sum_j |w_j| rtol s_j. A probe is judged against its smallest
        entry's tolerance (so that one wrong entry shows beside large ones); an error beyond
        that but below this bound could come from entries each within theirs: split it."""
        return self.rtol * float(np.abs(probe.weights) @ self.scale[probe.support])

    def exclude(self, probe, step):
        self.kinks.append(int(probe.support[0]))
        self.kink_step = max(self.kink_step, step)

    def locate(self, probe):
        """Bisect a failing probe to the entry with the largest excess error."""
        while probe.size > 1:
            start = len(self.judged)
            for half in probe.halves():
                self.run(half)
            leaves = self.judged[start:]
            del self.judged[start:]
            if not leaves:
                return None
            probe = max(leaves, key=lambda j: (j[1] - j[2]) / j[3])[0]
        return probe.support[0]


def _probes(n, mode, rng, max_blocks):
    if mode == "full":
        return [_Probe(np.array([j]), np.ones(1)) for j in range(n)]
    blocks = np.array_split(rng.permutation(n), min(n, max_blocks)) if mode == "directional" else []
    return [_Probe(np.sort(b), rng.choice([-1.0, 1.0], b.size)) for b in blocks]


def check_argument(name, data, evaluate, analytic, rng, *, f0, rtol, floor, floor_abs=0.0,
                   mode="full", step=1e-4, delta_min=0.0, max_blocks=MAX_BLOCKS, n_dense=N_DENSE,
                   cache=None):
    """The ArgCheck of ``analytic`` (a LinearMap) against central differences of
    ``evaluate()`` as ``data`` (perturbed in place, restored exactly) moves.

    ``f0 = evaluate()`` at the unperturbed data; ``mode``: "full", "directional" or "fast";
    ``floor``: entries below floor * max|a| are judged against that; ``floor_abs``: an
    absolute scale below which nothing is judged relatively (for an all-zero gradient);
    ``delta_min``: a floor on the rounding noise of one evaluation (e.g. how much two
    evaluations at the same point differ); ``cache``: a dict shared by checks of the same
    function at the same point (the power campaign's mutants), so that each evaluation is
    done once.
    """
    n = int(data.size)
    check = ArgCheck(name, tuple(data.shape), mode, n_entries=n)
    if n == 0:
        return check
    if data.ndim == 0:  # a scalar: probed through a one-entry view of it, reported with shape ()
        check = check_argument(name, data.reshape(1), evaluate, analytic, rng, f0=f0, rtol=rtol, floor=floor,
                               floor_abs=floor_abs, mode=mode, step=step, delta_min=delta_min,
                               max_blocks=max_blocks, n_dense=n_dense, cache=cache)
        check.shape, check.kinks = (), [() for _ in check.kinks]
        check.index = None if check.index is None else ()
        return check
    eng = _Engine(name, data, evaluate, analytic, f0, rtol, floor, floor_abs, step,
                  {} if cache is None else cache)
    eng.delta = max(eng.delta, delta_min)
    first = _probes(n, mode, rng, max_blocks)
    eng.pool_noise(first, rng)
    for p in first:
        eng.run(p)
    if mode != "full":
        keep = np.setdiff1d(np.arange(n), eng.kinks)
        for _ in range(n_dense if mode == "directional" else 1):
            if keep.size:
                eng.run(_Probe(keep, rng.standard_normal(keep.size), dense=True))
    return _verdict(check, eng, mode)


def _verdict(check, eng, mode):
    rtol, shape = eng.rtol, eng.data.shape
    statuses, worst = [], None
    for p, err, u, s in eng.judged:
        status = verdict(err, u, rtol * s)
        statuses.append(status)
        if status != "inconclusive" and not p.dense:
            eng.covered[p.support] = True
        rel = err / s
        check.max_abs_err = max(check.max_abs_err, err)
        check.resolution = max(check.resolution, 3 * u / s)
        if worst is None or rel > worst[0]:
            worst = (rel, p, status)
        check.max_rel_err = max(check.max_rel_err, rel)
    if mode == "fast":  # the one dense direction is all there is: it covers what it judged
        for (p, *_), status in zip(eng.judged, statuses):
            if status != "inconclusive":
                eng.covered[p.support] = True
    check.kinks = [tuple(int(i) for i in np.unravel_index(k, shape)) for k in sorted(eng.kinks)]
    check.kink_step = eng.kink_step
    check.n_covered, check.n_probes = int(eng.covered.sum()), eng.n_probes
    check.status = combined_status(statuses)
    uncovered = check.n_entries - check.n_kinks - check.n_covered
    if worst is not None and (mode == "full" or worst[1].size == 1):
        check.index = tuple(int(i) for i in np.unravel_index(worst[1].support[0], shape))
    if check.status == "failed" and worst[1].size > 1:
        failing = max((j for j, st in zip(eng.judged, statuses) if st == "failed"),
                      key=lambda j: (j[1] - j[2]) / j[3])[0]
        entry = eng.locate(failing)
        if entry is not None:
            check.index = tuple(int(i) for i in np.unravel_index(entry, shape))
    if check.status == "failed":
        return check
    if check.n_kinks == check.n_entries:
        check.status, check.note = "inconclusive", "every entry sits at a kink: nothing was checked"
    elif uncovered or check.status == "inconclusive":
        check.status = "inconclusive"
        why = [f"resolution {check.resolution:.1e} > rtol {rtol:.0e}: the finite differences are "
               "too noisy here"] if check.resolution > rtol else []
        if uncovered:
            why.append(f"{uncovered} entr{'y' if uncovered == 1 else 'ies'} not covered by a conclusive probe")
        check.note = "; ".join(why) or "an error within the measured noise of the tolerance"
    return check
