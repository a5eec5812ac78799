"""theory: closed forms for scale-invariant weights under L2, weight decay and projection.

NumPy only; imports nothing from refnet (so refnet is checked against an independent
derivation). Convention A (the paper: loss + lam*||w||^2, gradient + 2*lam*w) everywhere;
``convention="B"`` or ``from_pytorch_weight_decay`` converts PyTorch's ``weight_decay = 2*lam``.
The derivations are in theory/README.md; the laws are listed in THEORY.md.

- identities: exact identities (effective lr, one-step angle scaling, SGD norm recursion,
  zero-gradient decay, exponential-lr equivalence).
- equilibria: steady norm / angle / effective lr / relaxation per optimizer.
- growth: the no-L2 growth laws (SGD, Adam).
- symmetries: hyperparameter rescalings that leave directions unchanged (identity 5).
- balance: steady angle versus a layer's size and gradient scale.
- sign_and_orthogonal: Lion and Muon under decoupled weight decay (sign and Newton-Schulz
  correlations in time set the angle).
- wrappers: the rotational wrapper's and Hyperball's angles; SGD + momentum + decoupled decay.
- updates, randomwalk: reference update rules and the scale-invariant random walk that checks
  all of the above by simulation.
"""

from theory.balance import balance_exponents, steady_angle
from theory.conventions import from_pytorch_weight_decay, paper_lam, to_pytorch_weight_decay
from theory.equilibria import (Equilibrium, adam_l2_equilibrium, adam_v_noise_factor,
                               adamw_equilibrium, effective_width, momentum_correlation_factor,
                               projected_adam_equilibrium, projected_sgd_equilibrium,
                               sgd_l2_equilibrium, sgd_momentum_l2_equilibrium)
from theory.growth import Growth, adam_growth, sgd_growth
from theory.identities import (effective_lr, exponential_lr_equivalent, exponential_lr_initial_buffer,
                               exponential_lr_momentum, exponential_lr_ratio, l2_after_rescaling,
                               one_step_angle_scaling, sgd_norm_recursion, zero_gradient_norm)
from theory.randomwalk import Walk, initial_weights, random_walk, row_angles, scale_invariant_gradient
from theory.sign_and_orthogonal import (correlation_sum, lion_angle_kosson, lion_equilibrium, lion_R,
                                        momentum_correlations, muon_equilibrium, muon_R, newton_schulz,
                                        orthogonalized_correlation, sign_correlation)
from theory.symmetries import equilibrium_invariant, is_symmetry, symmetry_map
from theory.updates import AdamRule, LionRule, MuonRule, SGDRule
from theory.wrappers import (hyperball_angle, hyperball_radial, nesterov_angle_factor, rotational_angle,
                             sgdm_weight_decay_equilibrium)

__all__ = [
    "balance_exponents", "steady_angle",
    "from_pytorch_weight_decay", "paper_lam", "to_pytorch_weight_decay",
    "Equilibrium", "adam_l2_equilibrium", "adam_v_noise_factor", "adamw_equilibrium", "effective_width",
    "momentum_correlation_factor", "projected_adam_equilibrium", "projected_sgd_equilibrium",
    "sgd_l2_equilibrium", "sgd_momentum_l2_equilibrium",
    "Growth", "adam_growth", "sgd_growth",
    "effective_lr", "exponential_lr_equivalent", "exponential_lr_initial_buffer", "exponential_lr_momentum",
    "exponential_lr_ratio", "l2_after_rescaling", "one_step_angle_scaling",
    "sgd_norm_recursion", "zero_gradient_norm",
    "Walk", "initial_weights", "random_walk", "row_angles", "scale_invariant_gradient",
    "equilibrium_invariant", "is_symmetry", "symmetry_map",
    "correlation_sum", "lion_angle_kosson", "lion_equilibrium", "lion_R", "momentum_correlations",
    "muon_equilibrium", "muon_R", "newton_schulz", "orthogonalized_correlation", "sign_correlation",
    "hyperball_angle", "hyperball_radial", "nesterov_angle_factor", "rotational_angle",
    "sgdm_weight_decay_equilibrium",
    "AdamRule", "LionRule", "MuonRule", "SGDRule",
]
