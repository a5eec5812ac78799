"""What a gradient check reports: a verdict per argument and a printable table."""

from dataclasses import dataclass


class GradcheckWarning(UserWarning):
    """An input was not float64 and was promoted to check it."""


@dataclass
class ArgCheck:
    """The verdict on one argument or parameter. ``index`` is where the largest relative
    error is (full mode) or the entry a failing block bisected to (directional mode);
    ``n_checked``/``n_excluded`` count probes (entries in full mode)."""
    name: str
    shape: tuple
    mode: str = "-"
    max_abs_err: float = 0.0
    max_rel_err: float = 0.0
    index: tuple = None
    n_checked: int = 0
    n_excluded: int = 0
    ok: bool = True
    note: str = ""


class GradcheckReport:
    """``ok``; ``errors``: {name: ArgCheck}; ``problems``: what failed outside the numbers
    (a mutated input, a missing gradient). ``print(report)`` gives a table."""

    def __init__(self, title, checks, problems, rtol):
        self.title, self.rtol = title, rtol
        self.errors = {c.name: c for c in checks}
        self.problems = list(problems)

    @property
    def ok(self):
        return not self.problems and all(c.ok for c in self.errors.values())

    def __bool__(self):
        return self.ok

    @property
    def max_rel_err(self):
        return max((c.max_rel_err for c in self.errors.values()), default=0.0)

    @property
    def n_excluded(self):  # probes at a kink, over every argument
        return sum(c.n_excluded for c in self.errors.values())

    def __str__(self):
        rows = [("arg", "shape", "mode", "checked", "kinks", "max abs err", "max rel err", "at", "")]
        for c in self.errors.values():
            rows.append((c.name, "x".join(map(str, c.shape)) or "()", c.mode, str(c.n_checked),
                         str(c.n_excluded), f"{c.max_abs_err:.2e}", f"{c.max_rel_err:.2e}",
                         "-" if c.index is None else str(c.index), "ok" if c.ok else "FAIL"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = [f"{self.title}: {'ok' if self.ok else 'FAILED'} (rtol {self.rtol:.0e})"]
        lines += ["  " + "  ".join(s.ljust(w) for s, w in zip(r, widths)).rstrip() for r in rows]
        lines += [f"  {c.name}: {c.note}" for c in self.errors.values() if c.note]
        lines += [f"  problem: {p}" for p in self.problems]
        return "\n".join(lines)

    __repr__ = __str__
