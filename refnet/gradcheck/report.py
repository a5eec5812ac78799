"""What a gradient check reports: a status per argument, with coverage and resolution, and a
printable table."""

from dataclasses import dataclass, field

STATUSES = ("ok", "failed", "inconclusive")
SHOWN_KINKS = 3  # kink entries named in the printed note (all of them are in ArgCheck.kinks)


class GradcheckWarning(UserWarning):
    """An input was not float64 and was promoted to check it."""


class GradcheckError(RuntimeError):
    """Raised by a check called with ``raise_exception=True`` whose status is not ``ok``;
    ``.report`` holds the report, ``str()`` is its table."""

    def __init__(self, report):
        super().__init__(str(report))
        self.report = report


@dataclass
class ArgCheck:
    """The verdict on one argument or parameter.

    status: "ok" (every entry but the kinks covered by a probe that agreed, at a
        resolution within rtol), "failed" (a probe disagreed by more than rtol plus its
        measured noise) or "inconclusive" (neither could be shown; ``note`` says why).
    resolution: the smallest error in one entry, relative to that entry's scale
        max(|g_j|, floor * max|g|), that the probes could have detected, from the
        finite-difference noise they measured (the worst probe's).
    max_rel_err, max_abs_err: the largest disagreement |analytic - numerical| of a probe,
        relative to its scale and absolute.
    index: the entry with the largest relative error (full mode), or the entry a failing
        probe was bisected to (directional and fast modes).
    kinks: every entry excluded because it sits at or within ``kink_step`` of a kink (the
        one-sided slopes still differed at that step, and no shorter step could be judged).
    n_entries, n_covered: entries, and entries inside a probe that was judged.
    """
    name: str
    shape: tuple
    mode: str = "-"
    status: str = "ok"
    max_abs_err: float = 0.0
    max_rel_err: float = 0.0
    resolution: float = 0.0
    index: tuple = None
    n_probes: int = 0
    n_entries: int = 0
    n_covered: int = 0
    kinks: list = field(default_factory=list)
    kink_step: float = 0.0
    note: str = ""

    @property
    def ok(self):
        return self.status == "ok"

    @property
    def n_kinks(self):
        return len(self.kinks)

    @property
    def coverage(self):
        """Covered entries over the entries that are not at a kink (1.0 when all are)."""
        judgeable = self.n_entries - self.n_kinks
        return self.n_covered / judgeable if judgeable else 0.0


def combined_status(statuses):
    """failed beats inconclusive beats ok."""
    statuses = list(statuses)
    return next((s for s in ("failed", "inconclusive") if s in statuses), "ok")


class GradcheckReport:
    """``ok`` (bool), ``status``; ``errors``: {name: ArgCheck}; ``problems``: what failed
    outside the numbers (a mutated input, a missing gradient, a backward that assigns
    instead of adding, a backward that is not deterministic); ``unchecked``: [(name, what)]
    for the arguments passed through undifferentiated; ``note``: why nothing was checked,
    if so. With no ArgCheck at all the status is inconclusive, never ok. ``print(report)``
    gives a table."""

    def __init__(self, title, checks, problems, rtol, mode="auto", unchecked=(), note=""):
        self.title, self.rtol, self.mode, self.note = title, rtol, mode, note
        self.errors = {c.name: c for c in checks}
        self.problems = list(problems)
        self.unchecked = list(unchecked)  # [(name, what it is)]: arguments passed through, not differentiated

    @property
    def status(self):
        if self.problems:
            return "failed"
        if not self.errors:  # nothing was checked: that is not a pass
            return "inconclusive"
        return combined_status(c.status for c in self.errors.values())

    @property
    def ok(self):
        return self.status == "ok"

    def __bool__(self):
        return self.ok

    @property
    def max_rel_err(self):
        return max((c.max_rel_err for c in self.errors.values()), default=0.0)

    @property
    def resolution(self):
        return max((c.resolution for c in self.errors.values()), default=0.0)

    @property
    def n_kinks(self):  # entries at a kink, over every argument
        return sum(c.n_kinks for c in self.errors.values())

    def __str__(self):
        rows = [("arg", "shape", "mode", "status", "covered", "kinks", "resolution", "max rel err", "at")]
        for c in self.errors.values():
            judgeable = c.n_entries - c.n_kinks
            rows.append((c.name, "x".join(map(str, c.shape)) or "()", c.mode, c.status,
                         f"{c.n_covered}/{judgeable}", str(c.n_kinks), f"{c.resolution:.1e}",
                         f"{c.max_rel_err:.2e}", "-" if c.index is None else str(c.index)))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        head = {"ok": "ok", "failed": "FAILED", "inconclusive": "INCONCLUSIVE"}[self.status]
        lines = [f"{self.title}: {head} (rtol {self.rtol:.0e} per entry, float64 central differences)"]
        lines += ["  " + "  ".join(s.ljust(w) for s, w in zip(r, widths)).rstrip() for r in rows]
        for c in self.errors.values():
            if c.kinks:
                shown = ", ".join(str(k) for k in c.kinks[:SHOWN_KINKS])
                more = f" and {c.n_kinks - SHOWN_KINKS} more" if c.n_kinks > SHOWN_KINKS else ""
                lines.append(f"  {c.name}: {c.n_kinks} entr{'y' if c.n_kinks == 1 else 'ies'} at or within "
                             f"{c.kink_step:.0e} of a kink excluded: {shown}{more}")
            if c.note:
                lines.append(f"  {c.name}: {c.note}")
        if any(c.mode == "fast" for c in self.errors.values()):
            lines.append("  fast mode: one random Gaussian direction per argument; a wrong entry is caught "
                         "unless its weight there is tiny, and errors in several entries can nearly cancel "
                         "(full and directional modes judge every entry)")
        if self.note:
            lines.append(f"  {self.note}")
        if self.unchecked:
            lines.append("  not differentiated: " + ", ".join(f"{n!r} ({what})" for n, what in self.unchecked))
        lines += [f"  problem: {p}" for p in self.problems]
        return "\n".join(lines)

    __repr__ = __str__
