"""Pure functions: ``forward(...) -> (out, cache)`` and ``backward(dout, cache) -> grads``.

Forward mode and second order, beside each pair (the contract; docs/api/ops.md):

    forward_jvp(cache, t1, t2, ...)              -> tout
    backward_jvp(dout, tdout, cache, t1, t2, ...) -> (tgrad1, tgrad2, ...)

``t1, t2, ...`` are tangents of the forward's array arguments, in its order (None: zero);
``tout`` is the tangent of ``out`` (the R-operator, Pearlmutter 1994); ``backward_jvp`` is
d/dt of ``backward(dout + t tdout, cache of forward(args + t tangents))``, aligned with
backward's return. The loss fuses forward and backward, and so does its JVP:
``softmax_cross_entropy_jvp(logits, labels, tlogits) -> (tloss, tdlogits)``.
A Hessian-vector product is one forward, one forward_jvp, one backward_jvp: about two
forward-backward passes.
"""

from refnet.ops.conv import (conv2d_backward, conv2d_backward_jvp, conv2d_forward,  # noqa: F401
                             conv2d_forward_jvp)
from refnet.ops.linear import (linear_backward, linear_backward_jvp, linear_forward,  # noqa: F401
                               linear_forward_jvp)
from refnet.ops.loss import softmax_cross_entropy, softmax_cross_entropy_jvp  # noqa: F401
from refnet.ops.pool import (  # noqa: F401
    avgpool2d_backward,
    avgpool2d_backward_jvp,
    avgpool2d_forward,
    avgpool2d_forward_jvp,
    maxpool2d_backward,
    maxpool2d_backward_jvp,
    maxpool2d_forward,
    maxpool2d_forward_jvp,
)
from refnet.ops.relu import relu_backward, relu_backward_jvp, relu_forward, relu_forward_jvp  # noqa: F401
from refnet.ops.batchnorm import (  # noqa: F401
    batchnorm_backward,
    batchnorm_backward_jvp,
    batchnorm_eval_backward,
    batchnorm_eval_backward_jvp,
    batchnorm_eval_forward,
    batchnorm_eval_forward_jvp,
    batchnorm_forward,
    batchnorm_forward_jvp,
)
from refnet.ops.layernorm import (layernorm_backward, layernorm_backward_jvp,  # noqa: F401
                                  layernorm_forward, layernorm_forward_jvp)
from refnet.ops.weightnorm import (weightnorm_backward, weightnorm_backward_jvp,  # noqa: F401
                                   weightnorm_forward, weightnorm_forward_jvp)
