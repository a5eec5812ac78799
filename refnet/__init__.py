"""refnet: a NumPy-from-scratch reference for "L2 Regularization versus Batch and
Weight Normalization" (van Laarhoven, 2017).

Every forward and backward pass is written by hand (``refnet.ops``), wrapped in
PyTorch-like modules (``refnet.nn``), trained by hand-written optimizers
(``refnet.optim``) and checked against closed forms (the top-level ``theory``
package).
"""

__version__ = "0.1.0"
