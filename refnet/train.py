"""The training loop and what it records.

    trainer = Trainer(model, SGD(trainable_parameters(model), lr=0.01, l2=5e-4), data,
                      epochs=2, out_dir="runs/a")
    history = trainer.fit()          # history["test_accuracy"][-1], history.steps["norm/0.weight"]

One step is: forward, loss, backward, optimizer step; nothing hidden. Every ``log_every``
steps, for each trained parameter with a ``scale_group`` (one row per scale group: a unit
for "unit", the whole tensor for "tensor"), the step records, vectorised over groups:
  norm          ||w||                 (before the step)
  effective_lr  the step of the unit vector w/||w|| per unit of the optimizer's own
                gradient-scale-free direction (``effective_lr``): lr/||w||^2 (SGD, whose
                direction is the gradient at the unit point), lr/||w|| (Adam, Lion: m/sqrt(v)
                and sign(c) do not scale with w), adjusted lr/||w|| (Muon), eta_r
                (Rotational: tan(angle) = eta_r ||u||/RMS(||u||)), lr (Hyperball: tan(angle)
                = lr on an orthogonal update); decay and momentum are not in it
  angle         angle between w before and after the step (radians)
  grad_norm_unit ||w||*||g||, the gradient norm at the unit point w/||w|| (g: the loss
                gradient, before the optimizer adds L2)
plus the minibatch loss and the lr. Arrays have shape (n_logged, n_groups) and go to
``history.npz`` under "<quantity>/<parameter name>"; per-epoch numbers go to ``history.json``.

Checkpoints (``refnet.checkpoint``) hold everything the loop depends on, including the
RNG state and the current epoch's batch order, so a resumed run continues bit-identically,
also from the middle of an epoch. A NaN or inf loss raises ``NonFiniteLossError`` before
the step is applied, leaving the model as it was before that step (BatchNorm's running
statistics included) and the last checkpoint as it was.

Stopping early: ``request_stop()`` (or a signal inside ``refnet.signals.handled(
trainer.request_stop)``) lets the step in flight finish (a test pass stops between two
batches); ``fit`` then saves a checkpoint at the last finished step and raises
``TrainingInterrupted``. A second request stops at once, save for the moments the state is
being changed or saved, so the checkpoint still holds the last finished step. Resuming from
it continues bit-identically (an interrupted epoch-end test pass is run again first).
"""

import json
import math
import os
import time

import numpy as np
from tqdm import tqdm

from refnet import backend, checkpoint, signals
from refnet.checkpoint import json_safe
from refnet.data import batch_indices
from refnet.dynamics import StepAngles
from refnet.invariance import group_sq_norms
from refnet.ops import softmax_cross_entropy
from refnet.ops._checks import check_int
from refnet.optim import SGD, Adam, Hyperball, Lion, Muon, Rotational
from refnet.optim.muon import adjusted_lr

EPOCH_KEYS = ("epoch", "step", "train_loss", "train_accuracy", "test_loss", "test_accuracy",
              "epoch_time")
QUANTITIES = ("norm", "effective_lr", "angle", "grad_norm_unit")


def effective_lr(optimizer, group, param, sq_norm):
    """The effective learning rate of a scale-invariant ``param`` (per scale group, from its
    squared norm ``sq_norm``) in ``group`` of ``optimizer``: how far one step moves the unit
    vector ``w/||w||`` per unit of the optimizer's direction, the part of the step that does
    not scale with ``w`` (see the module docstring). ``param`` None: only check the kind (None)."""
    if not isinstance(optimizer, (Rotational, Hyperball, SGD, Adam, Lion, Muon)):
        raise TypeError(f"Trainer(optimizer): got {type(optimizer).__name__}, expected SGD, Adam, Lion, Muon, "
                        f"or one of them in Rotational or Hyperball (the recorded effective lr needs its kind)")
    if param is None:  # a group without scale-invariant weights may have no angle (Rotational)
        return None
    lr = group["lr"]
    if isinstance(optimizer, Rotational):
        return 0 * sq_norm + optimizer.target(group)
    if isinstance(optimizer, Hyperball):
        return 0 * sq_norm + lr
    if isinstance(optimizer, SGD):
        return lr / sq_norm
    if isinstance(optimizer, (Adam, Lion)):
        return lr / sq_norm ** 0.5
    if isinstance(optimizer, Muon):
        lr = adjusted_lr(lr, group["adjust_lr_fn"], (param.shape[0], param.data.size // param.shape[0]))
        return lr / sq_norm ** 0.5


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or inf; ``step`` is the step (0-based) whose forward produced it."""

    def __init__(self, step, loss, checkpoint_path):
        self.step, self.loss, self.checkpoint_path = step, loss, checkpoint_path
        kept = (f"the last good checkpoint is {checkpoint_path}" if checkpoint_path
                else "no checkpoint was written")
        super().__init__(f"training stopped: loss is {loss} at step {step}; {kept}. "
                         f"Lower the learning rate or check the data.")


class TrainingInterrupted(signals.Interrupted):
    """``fit`` stopped at ``step`` of ``total_steps`` on request; ``checkpoint_path`` holds
    that step (None without an ``out_dir``)."""

    def __init__(self, signum, step, total_steps, checkpoint_path):
        self.step, self.total_steps, self.checkpoint_path = step, total_steps, checkpoint_path
        kept = f"checkpoint saved: {checkpoint_path}" if checkpoint_path else "no checkpoint (no out_dir)"
        super().__init__(signum, f"stopped by {signals.signal_name(signum)} at step {step} of "
                                 f"{total_steps}; {kept}")


class History:
    """Per-epoch records (``history["test_accuracy"]``) and per-step arrays (``history.steps``)."""

    def __init__(self, config=None):
        self.config = json_safe(config or {})
        self.epochs = {k: [] for k in EPOCH_KEYS}
        self.final = None  # evaluation at the end of fit (also when it stops mid-epoch)
        self.params = {}   # parameter name -> {"scale_group", "shape", "n_groups"}
        self._done = {}    # key -> host array of rows already gathered
        self._rows = {}    # key -> rows appended since (device arrays or numbers)

    def __getitem__(self, key):
        return self.epochs[key] if key in self.epochs else self.steps[key]

    def add_epoch(self, **record):
        for k in EPOCH_KEYS:
            self.epochs[k].append(record[k])

    def add_row(self, key, value):
        self._rows.setdefault(key, []).append(value)

    @property
    def steps(self):
        """``{key: numpy array}``: "step", "loss", "lr" (n_logged,), "<quantity>/<name>" (n_logged, n_groups)."""
        self._gather()
        return dict(self._done)

    def _gather(self):
        for key, rows in self._rows.items():
            if rows:
                xp = backend.array_module(*[r for r in rows if not np.isscalar(r)])
                block = backend.asnumpy(xp.stack([xp.asarray(r) for r in rows]))
                old = self._done.get(key)
                self._done[key] = block if old is None else np.concatenate([old, block])
                rows.clear()

    def to_json(self):
        return json_safe({"config": self.config, **self.epochs, "final": self.final,
                           "params": self.params, "steps_file": "history.npz"})

    def save(self, out_dir):
        """Write ``history.json`` and ``history.npz`` into ``out_dir`` (atomically)."""
        checkpoint.write_json(os.path.join(out_dir, "history.json"), self.to_json())
        checkpoint.write_npz(os.path.join(out_dir, "history.npz"), self.steps)

    @classmethod
    def from_json(cls, obj, steps=None):
        h = cls(obj.get("config"))
        h.epochs = {k: list(obj.get(k, [])) for k in EPOCH_KEYS}
        h.final, h.params = obj.get("final"), dict(obj.get("params", {}))
        h._done = dict(steps or {})
        return h

    @classmethod
    def load(cls, out_dir):
        """The History saved by ``save(out_dir)``."""
        with open(os.path.join(out_dir, "history.json")) as f:
            return cls.from_json(json.load(f), checkpoint.read_npz(os.path.join(out_dir, "history.npz"))[0])


class Trainer:
    """Train ``model`` with ``optimizer`` on ``data`` (``x_train, y_train, x_test, y_test``;
    host arrays, batches are moved to the current backend in the model's dtype).

    steps: total number of steps, overriding ``epochs``; ``fit`` trains until it.
    schedule: ``step -> factor`` multiplying each param group's initial lr.
    seed: seeds the batch order (one permutation per epoch); nothing else is random.
    log_every: record the per-step quantities every N steps (from step 0).
    out_dir: where history.json/.npz and checkpoint.npz go (None: nothing is written); epoch
        ends and the end of ``fit`` checkpoint, and every ``checkpoint_every`` steps if set.
    eval_every_epoch: evaluate on the test split after each epoch and at the end of ``fit``
        (``history.final``), in eval mode, ``eval_batch_size`` at a time.
    Only parameters in the optimizer are recorded: pass ``trainable_parameters(model)``.
    """

    def __init__(self, model, optimizer, data, batch_size=128, epochs=1, steps=None,
                 schedule=None, seed=0, log_every=1, out_dir=None, progress=True,
                 eval_every_epoch=True, eval_batch_size=1000, checkpoint_every=None,
                 drop_last=False, config=None):
        batch_size, epochs, log_every = (check_int(k, v, "Trainer", minimum=1) for k, v in
                                         (("batch_size", batch_size), ("epochs", epochs), ("log_every", log_every)))
        steps = None if steps is None else check_int("steps", steps, "Trainer")
        self.model, self.optimizer, self.data = model, optimizer, data
        self.batch_size, self.log_every, self.schedule = batch_size, log_every, schedule
        self.out_dir, self.progress = out_dir, progress
        self.eval_batch_size, self.checkpoint_every, self.drop_last = eval_batch_size, checkpoint_every, drop_last
        n = len(data.x_train)
        n_test = 0 if getattr(data, "x_test", None) is None else len(data.x_test)
        self.eval_every_epoch = eval_every_epoch and n_test > 0
        per_epoch = n // self.batch_size if drop_last else -(-n // self.batch_size)
        if per_epoch < 1:
            raise ValueError(f"Trainer(batch_size): got {batch_size} with drop_last and {n} examples")
        self.total_steps = int(steps) if steps is not None else int(epochs) * per_epoch
        self.dtype = model.parameters()[0].dtype
        effective_lr(optimizer, optimizer.param_groups[0], None, 1.0)  # an optimizer it knows, or a clear error now
        self.base_lrs = [float(g["lr"]) for g in optimizer.param_groups]
        group_of = {id(p): i for i, g in enumerate(optimizer.param_groups) for p in g["params"]}
        self.tracked = [(name, p, group_of[id(p)]) for name, p in model.named_parameters()
                        if p.scale_group is not None and id(p) in group_of]
        self._angles = StepAngles(optimizer)  # the recorded angle (dynamics.StepAngles)
        self.rng = np.random.default_rng(seed)
        self.step = self.epoch = self.batch_pos = 0
        self.order = None  # this epoch's list of index arrays
        self._sums = [0.0, 0, 0]  # loss * batch size, correct, seen: the running epoch means
        self._epoch_time = 0.0
        self.last_checkpoint = None
        self.stops = signals.StopRequests()  # request_stop's; fit takes them at its safe points
        hyper = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
        self.history = History({
            "data": getattr(data, "name", None), "n_train": n, "n_test": n_test,
            "model": type(model).__name__, "dtype": np.dtype(self.dtype).name,
            "optimizer": type(optimizer).__name__, "param_groups": hyper,
            "batch_size": self.batch_size, "epochs": epochs, "steps": self.total_steps,
            "steps_per_epoch": per_epoch, "seed": seed, "log_every": self.log_every,
            "device": backend.default_name(), **(config or {})})
        for name, p, _ in self.tracked:
            self.history.params[name] = {"scale_group": p.scale_group, "shape": list(p.shape),
                                         "n_groups": int(p.shape[0]) if p.scale_group == "unit" else 1}

    # --- one step ---------------------------------------------------------------------
    def _batch(self, x, y, idx):
        xb = backend.to_device(np.ascontiguousarray(x[idx], dtype=self.dtype))
        return xb, backend.to_device(np.asarray(y[idx], dtype=np.int64))

    def train_step(self, x, y):
        """One optimizer step on the batch ``(x, y)`` (device arrays); returns (loss, n correct)."""
        model, opt = self.model, self.optimizer
        if self.schedule is not None:
            factor = float(self.schedule(self.step))
            for g, base in zip(opt.param_groups, self.base_lrs):
                g["lr"] = base * factor
        buffers = [b.copy() for _, b in model.named_buffers()]  # the forward moves BN's running stats
        with np.errstate(all="ignore"):  # overflow shows up as a non-finite loss, checked below
            try:  # a NaN loss or a second stop request: the model stays as it was before the step
                model.zero_grad()
                logits = model(x)
                loss, dlogits = softmax_cross_entropy(logits, y)
                loss = backend.scalar(loss)
                if not math.isfinite(loss):
                    raise NonFiniteLossError(self.step, loss, self.last_checkpoint)
                model.backward_params(dlogits)     # the input is data: no dL/dx
                record = self.step % self.log_every == 0
                before = self._before_step() if record else None
            except BaseException:
                for (_, b), old in zip(model.named_buffers(), buffers):
                    b[...] = old
                raise
            with self.stops.uninterrupted():
                opt.step()
                if record:
                    self._after_step(before, loss)
        return loss, int((logits.argmax(axis=1) == y).sum())

    def _before_step(self):
        stats = []
        for name, p, gi in self.tracked:
            xp = backend.array_module(p.data)
            group = self.optimizer.param_groups[gi]
            sq, g2 = group_sq_norms(p.data, p.scale_group), group_sq_norms(p.grad, p.scale_group)
            norm = xp.sqrt(sq)
            eff = effective_lr(self.optimizer, group, p, sq)
            # the angle reuses ||w||^2 and ||g||^2 (dynamics.StepAngles)
            stats.append((self._angles.before(name, p, group, sq, g2), norm, eff, norm * xp.sqrt(g2)))
        return stats

    def _after_step(self, before, loss):
        h = self.history
        h.add_row("step", self.step)
        h.add_row("loss", loss)
        h.add_row("lr", float(self.optimizer.param_groups[0]["lr"]))
        for (name, p, _), (token, norm, eff, gunit) in zip(self.tracked, before):
            h.add_row(f"norm/{name}", norm)
            h.add_row(f"effective_lr/{name}", eff)
            h.add_row(f"angle/{name}", self._angles.after(p, token)[0])
            h.add_row(f"grad_norm_unit/{name}", gunit)

    # --- evaluation -------------------------------------------------------------------
    def evaluate(self, x=None, y=None):
        """``(mean loss, accuracy)`` on ``(x, y)`` (default: the test split), in eval mode;
        a pending stop request (``request_stop``) interrupts it between two batches."""
        x = self.data.x_test if x is None else x
        y = self.data.y_test if y is None else y
        self.model.eval()
        total, correct = 0.0, 0
        starts = tqdm(range(0, len(x), self.eval_batch_size), desc="test", unit="batch", leave=False,
                      disable=None if self.progress else True, dynamic_ncols=True)
        try:
            for start in starts:
                self.stops.check()
                xb, yb = self._batch(x, y, slice(start, start + self.eval_batch_size))
                with np.errstate(all="ignore"):
                    logits = self.model(xb)
                    loss, _ = softmax_cross_entropy(logits, yb)
                total += backend.scalar(loss) * len(yb)
                correct += int((logits.argmax(axis=1) == yb).sum())
        finally:
            starts.close()
            self.model.train()
        return total / len(x), correct / len(x)

    # --- the loop ---------------------------------------------------------------------
    def fit(self):
        """Train until ``total_steps``; returns the ``History`` (also written to ``out_dir``)."""
        bar = tqdm(total=self.total_steps, initial=self.step, disable=None if self.progress else True,
                   unit="step", dynamic_ncols=True)  # None: shown on a terminal only
        self.stops.begin()
        try:
            while True:
                self.stops.check()
                if self.order is not None and self.batch_pos == len(self.order):
                    self._end_epoch()  # also when resuming from a stop before its test pass
                elif self.step < self.total_steps:
                    self._one_step(bar)
                else:
                    break
            self._finish()
        except signals.Interrupted as stop:  # the state is that of the last finished step
            raise self._stopped(stop.signum) from None
        finally:
            bar.close()
        return self.history

    def _one_step(self, bar):
        d = self.data
        if self.order is None:
            with self.stops.uninterrupted():
                self.order = batch_indices(len(d.x_train), self.batch_size, self.rng,
                                           shuffle=True, drop_last=self.drop_last)
                self.batch_pos, self._sums, self._epoch_time = 0, [0.0, 0, 0], 0.0
        t0 = time.perf_counter()
        idx = self.order[self.batch_pos]
        loss, correct = self.train_step(*self._batch(d.x_train, d.y_train, idx))
        with self.stops.uninterrupted():
            self._sums = [self._sums[0] + loss * len(idx), self._sums[1] + correct, self._sums[2] + len(idx)]
            self.step, self.batch_pos = self.step + 1, self.batch_pos + 1
            self._epoch_time += time.perf_counter() - t0
            if self.checkpoint_every and self.step % self.checkpoint_every == 0 \
                    and self.batch_pos < len(self.order):
                self.save_checkpoint()
        bar.update(1)
        if self.step % 20 == 0:
            bar.set_postfix(epoch=self.epoch + 1, loss=f"{loss:.4f}", refresh=False)

    def _finish(self):
        loss_sum, correct, seen = self._sums  # the last (maybe partial) epoch's running means
        final = {"step": self.step, "train_loss": loss_sum / seen if seen else None,
                 "train_accuracy": correct / seen if seen else None, "test_loss": None, "test_accuracy": None}
        if self.eval_every_epoch:
            ep = self.history.epochs
            if ep["step"] and ep["step"][-1] == self.step:  # just evaluated at the epoch's end
                final["test_loss"], final["test_accuracy"] = ep["test_loss"][-1], ep["test_accuracy"][-1]
            else:
                final["test_loss"], final["test_accuracy"] = self.evaluate()
        with self.stops.uninterrupted():
            self.history.final = final
            if self.out_dir is not None:
                self.history.save(self.out_dir)
                self.save_checkpoint()

    def request_stop(self, signum=None):
        """Ask ``fit`` to stop after the step in flight (a signal handler: see the module
        docstring and ``refnet.signals.StopRequests``); a second request stops sooner."""
        self.stops.request(signals.STOP_SIGNALS[0] if signum is None else signum)

    def _stopped(self, signum):
        """Save the last finished step and return the ``TrainingInterrupted`` to raise."""
        path = None
        if self.out_dir is not None:
            self.history.save(self.out_dir)
            path = self.save_checkpoint()
        return TrainingInterrupted(signum, self.step, self.total_steps, path)

    def _end_epoch(self):
        loss_sum, correct, seen = self._sums
        test_loss = test_acc = None
        if self.eval_every_epoch:
            test_loss, test_acc = self.evaluate()
        with self.stops.uninterrupted():
            self.epoch += 1
            self.history.add_epoch(epoch=self.epoch, step=self.step, train_loss=loss_sum / seen,
                                   train_accuracy=correct / seen, test_loss=test_loss,
                                   test_accuracy=test_acc, epoch_time=self._epoch_time)
            self.order = None
            if self.out_dir is not None:
                self.history.save(self.out_dir)
                self.save_checkpoint()

    # --- checkpoints ------------------------------------------------------------------
    def checkpoint_path(self):
        return None if self.out_dir is None else os.path.join(self.out_dir, "checkpoint.npz")

    def save_checkpoint(self, path=None):
        """Write everything needed to resume bit-identically; returns the path."""
        path = path or self.checkpoint_path()
        if path is None:
            raise ValueError("Trainer.save_checkpoint(path): got None and the Trainer has no out_dir")
        arrays = {f"history/{k}": v for k, v in self.history.steps.items()}
        if self.order is not None:
            arrays["trainer/order"] = np.concatenate(self.order)
            arrays["trainer/order_sizes"] = np.array([len(b) for b in self.order], dtype=np.int64)
        meta = {"step": self.step, "epoch": self.epoch, "batch_pos": self.batch_pos,
                "rng": self.rng.bit_generator.state, "base_lrs": self.base_lrs,
                "sums": self._sums, "epoch_time": self._epoch_time,
                "history": self.history.to_json()}
        checkpoint.save_checkpoint(path, self.model, self.optimizer, json_safe(meta), arrays)
        self.last_checkpoint = path
        return path

    def load_checkpoint(self, path=None):
        """Restore model, optimizer, RNG, position and history from ``path`` (default: out_dir's)."""
        path = path or self.checkpoint_path()
        meta, arrays = checkpoint.load_checkpoint(path, self.model, self.optimizer)
        self.step, self.epoch, self.batch_pos = meta["step"], meta["epoch"], meta["batch_pos"]
        self.rng.bit_generator.state = meta["rng"]
        self.base_lrs, self._sums, self._epoch_time = meta["base_lrs"], meta["sums"], meta["epoch_time"]
        self.order = None
        if "trainer/order" in arrays:
            cuts = np.cumsum(arrays["trainer/order_sizes"])[:-1]
            self.order = np.split(arrays["trainer/order"], cuts)
        steps = {k[len("history/"):]: v for k, v in arrays.items() if k.startswith("history/")}
        config = self.history.config
        self.history = History.from_json(meta["history"], steps)
        self.history.config = {**self.history.config, **config, "resumed_from_step": self.step}
        self.last_checkpoint = path
        return self
