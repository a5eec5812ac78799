"""Hand-written optimizers: SGD and Adam with coupled L2 (``l2``, the paper's
``lam * ||w||^2``), decoupled weight decay (``weight_decay``, as AdamW) and the paper's
unit-norm projection (``unit_norm``); Lion and Muon (decoupled decay); the rotational wrapper
(a fixed angle per step) and Hyperball (a fixed norm and step length) around any of them;
learning-rate schedules."""

from refnet.optim.adam import Adam  # noqa: F401
from refnet.optim.hyperball import Hyperball  # noqa: F401
from refnet.optim.lion import Lion  # noqa: F401
from refnet.optim.muon import Muon, newton_schulz  # noqa: F401
from refnet.optim.optimizer import (Optimizer, flatten_state_dict,  # noqa: F401
                                    unflatten_state_dict)
from refnet.optim.rotational import Rotational, equilibrium_angle  # noqa: F401
from refnet.optim.schedules import (constant, cosine, get_schedule,  # noqa: F401
                                    linear_warmup, step_decay, warmup_then)
from refnet.optim.sgd import SGD  # noqa: F401
