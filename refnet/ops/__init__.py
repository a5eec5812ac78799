"""Pure functions: ``forward(...) -> (out, cache)`` and ``backward(dout, cache) -> grads``."""

from refnet.ops.conv import conv2d_backward, conv2d_forward  # noqa: F401
from refnet.ops.linear import linear_backward, linear_forward  # noqa: F401
from refnet.ops.loss import softmax_cross_entropy  # noqa: F401
from refnet.ops.pool import (  # noqa: F401
    avgpool2d_backward,
    avgpool2d_forward,
    maxpool2d_backward,
    maxpool2d_forward,
)
from refnet.ops.relu import relu_backward, relu_forward  # noqa: F401
from refnet.ops.batchnorm import (  # noqa: F401
    batchnorm_backward,
    batchnorm_eval_backward,
    batchnorm_eval_forward,
    batchnorm_forward,
)
from refnet.ops.layernorm import layernorm_backward, layernorm_forward  # noqa: F401
from refnet.ops.weightnorm import weightnorm_backward, weightnorm_forward  # noqa: F401
