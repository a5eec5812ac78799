"""Learning-rate schedules: small functions of the step (0, 1, 2, ...) that return a
multiplier of the base learning rate.

The trainer keeps each group's base lr and, before step ``t``, sets
``group["lr"] = base_lr * schedule(t)``; ``get_schedule(name, **options)`` builds the
``step -> factor`` callable from the names the CLI accepts:

=================  ==========================================  ==============================
name               factor at step t                            options
=================  ==========================================  ==============================
``constant``       1                                           --
``step``           ``gamma ** (t // step_size)``               step_size, gamma=0.1
``cosine``         ``final + (1 - final) (1 + cos(pi t/T)) / 2``  total_steps (T), final=0.0
``warmup``         ``(t + 1) / W`` for t < W, then 1           warmup_steps (W)
``warmup-X``       warm-up for W steps, then X shifted by W    warmup_steps, X's options
=================  ==========================================  ==============================

In ``warmup-cosine`` the ``total_steps`` count the whole run, warm-up included: the
cosine spans the last ``total_steps - warmup_steps`` steps and reaches ``final`` at the
end. In ``warmup-step`` the ``step_size`` is counted from the end of the warm-up.
"""

import functools
import inspect
import math
import numbers

from refnet.ops._checks import check_int


def constant(step):
    """1 at every step."""
    check_int("step", step, "constant")
    return 1.0


def step_decay(step, step_size, gamma=0.1):
    """``gamma ** (step // step_size)``: multiply the rate by ``gamma`` every ``step_size`` steps
    (``torch.optim.lr_scheduler.StepLR``)."""
    step = check_int("step", step, "step_decay")
    step_size = check_int("step_size", step_size, "step_decay", minimum=1)
    _check_factor("gamma", gamma, "step_decay")
    return float(gamma) ** (step // step_size)


def cosine(step, total_steps, final=0.0):
    """Half a cosine from 1 at step 0 down to ``final`` at ``total_steps``, then ``final``
    (``CosineAnnealingLR`` with ``eta_min = final * base_lr``)."""
    step = check_int("step", step, "cosine")
    total_steps = check_int("total_steps", total_steps, "cosine", minimum=1)
    _check_factor("final", final, "cosine")
    progress = min(step, total_steps) / total_steps
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))


def linear_warmup(step, warmup_steps):
    """``(step + 1) / warmup_steps`` while ``step < warmup_steps``, then 1: the first step
    already moves (at ``1 / warmup_steps``) and step ``warmup_steps - 1`` reaches 1."""
    step = check_int("step", step, "linear_warmup")
    warmup_steps = check_int("warmup_steps", warmup_steps, "linear_warmup")
    if step >= warmup_steps:
        return 1.0
    return (step + 1) / warmup_steps


def warmup_then(schedule, warmup_steps):
    """A schedule that warms up linearly over ``warmup_steps`` steps towards ``schedule(0)``,
    then follows ``schedule`` shifted so that its step 0 is the first step after warm-up."""
    warmup_steps = check_int("warmup_steps", warmup_steps, "warmup_then")
    if not callable(schedule):
        raise TypeError(f"warmup_then(schedule): got {schedule!r}, expected a callable step -> factor")

    def warmed(step):
        step = check_int("step", step, "warmup_then")
        if step < warmup_steps:
            return linear_warmup(step, warmup_steps) * schedule(0)
        return schedule(step - warmup_steps)

    warmed.__name__ = f"warmup_then({getattr(schedule, '__name__', repr(schedule))}, {warmup_steps})"
    return warmed


_SCHEDULES = {"constant": constant, "step": step_decay, "cosine": cosine}


def get_schedule(name, **options):
    """The ``step -> factor`` callable called ``name`` (see the module's table), with its
    options checked now rather than at the first step."""
    names = sorted(_SCHEDULES) + ["warmup"] + [f"warmup-{n}" for n in sorted(_SCHEDULES)]
    if not isinstance(name, str) or name not in names:
        raise ValueError(f"get_schedule(name): got {name!r}, expected one of {names}")
    if name == "warmup":
        name = "warmup-constant"
    if name.startswith("warmup-"):
        if "warmup_steps" not in options:
            raise TypeError(f"get_schedule({name!r}): missing option 'warmup_steps'")
        options = dict(options)
        warmup_steps = check_int("warmup_steps", options.pop("warmup_steps"), f"get_schedule({name!r})")
        inner = name[len("warmup-"):]
        if inner == "cosine" and "total_steps" in options:
            total = check_int("total_steps", options["total_steps"], f"get_schedule({name!r})",
                              minimum=warmup_steps + 1)
            options["total_steps"] = total - warmup_steps
        return warmup_then(get_schedule(inner, **options), warmup_steps)
    fn = _SCHEDULES[name]
    params = list(inspect.signature(fn).parameters.values())[1:]
    allowed = [p.name for p in params]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"get_schedule({name!r}): unknown option(s) {unknown}, expected any of {allowed}")
    missing = [p.name for p in params if p.default is inspect.Parameter.empty and p.name not in options]
    if missing:
        raise TypeError(f"get_schedule({name!r}): missing option(s) {missing}")
    schedule = functools.partial(fn, **options)
    schedule(0)  # validates the options
    functools.update_wrapper(schedule, fn)
    return schedule


def _check_factor(name, value, op):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or value < 0:
        raise ValueError(f"{op}({name}): got {value!r}, expected a finite number >= 0")
