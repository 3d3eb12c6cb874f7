"""Chebyshev polynomials and the cosine cutoff of the descriptor, and aenet-python's basis modules built on them.

``chebyshev`` and ``cosine_cutoff`` are the one home of this math: the
descriptor's per-edge and per-triplet terms call them order-major, and
``ChebyshevPolynomials``, ``RadialBasis`` and ``AngularBasis`` (the
``aenet.torch_featurize`` classes of the same names) expose them with the
orders on the last axis.
"""
import math

import torch
from torch import nn

from aenet_core.rules import DEFAULT_MIN_CUTOFF


def chebyshev(x, order: int, with_derivative: bool = False):
    """T_0..T_order at x, stacked on a new first axis; optionally also dT_n/dx = n U_{n-1}(x).

    Both come from the three-term recurrence P_{n+1} = 2x P_n - P_{n-1} (U is the
    second kind), which stays exact at x = +-1, unlike cos(n arccos x).
    """
    x2 = 2 * x
    t = [torch.ones_like(x), x]
    while len(t) <= order:
        t.append(x2 * t[-1] - t[-2])
    t = torch.stack(t[: order + 1])
    if not with_derivative:
        return t
    u = [torch.zeros_like(x), torch.ones_like(x), x2]  # u[n] = U_{n-1}
    while len(u) <= order:
        u.append(x2 * u[-1] - u[-2])
    n = torch.arange(order + 1, dtype=x.dtype, device=x.device).reshape((-1,) + (1,) * x.dim())
    return t, n * torch.stack(u[: order + 1])


def cosine_cutoff(d, rc: float, with_derivative: bool = False):
    """fc(d) = (cos(pi d / rc) + 1) / 2 for 0 <= d <= rc (zero at rc); optionally also dfc/dd."""
    arg = (math.pi / rc) * d
    fc = 0.5 * torch.cos(arg) + 0.5
    if not with_derivative:
        return fc
    return fc, (-0.5 * math.pi / rc) * torch.sin(arg)


class ChebyshevPolynomials(nn.Module):
    """T_0..T_max_order of r rescaled from [r_min, r_max] to [-1, 1]: ``cheb(r)`` is (..., max_order + 1).

    Rescaled arguments are clamped to [-1, 1], as in aenet-python; dT/dx comes from
    the recurrence, exact at x = +-1 (n^2 there).
    """

    def __init__(self, max_order: int, r_min: float, r_max: float, dtype: torch.dtype = torch.float64):
        super().__init__()
        if not r_max > r_min:
            raise ValueError(f"r_max must exceed r_min; got r_min={r_min!r}, r_max={r_max!r}")
        self.max_order, self.r_min, self.r_max, self.dtype = int(max_order), float(r_min), float(r_max), dtype
        # A buffer follows the module's .to(); not persistent, so it never enters a state_dict.
        self.register_buffer("orders", torch.arange(self.max_order + 1, dtype=dtype), persistent=False)

    def rescale_distances(self, r: torch.Tensor) -> torch.Tensor:
        """x = (2 r - r_min - r_max) / (r_max - r_min), clamped to [-1, 1]."""
        return torch.clamp((2.0 * r - self.r_min - self.r_max) / (self.r_max - self.r_min), -1.0, 1.0)

    def cutoff_function(self, r: torch.Tensor, Rc: float) -> torch.Tensor:
        """The cosine cutoff fc(r) for r < Rc, else 0."""
        return torch.where(r < Rc, cosine_cutoff(r, Rc), torch.zeros_like(r))

    def cutoff_derivative(self, r: torch.Tensor, Rc: float) -> torch.Tensor:
        """dfc/dr for r < Rc, else 0."""
        return torch.where(r < Rc, cosine_cutoff(r, Rc, True)[1], torch.zeros_like(r))

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """T[..., n] = T_n(x(r)), shape (*r.shape, max_order + 1)."""
        return chebyshev(self.rescale_distances(r), self.max_order).movedim(0, -1)

    def evaluate_with_derivatives(self, r: torch.Tensor) -> tuple:
        """(T, dT/dr), both (*r.shape, max_order + 1); dT/dr = dT/dx * 2 / (r_max - r_min)."""
        t, dt = chebyshev(self.rescale_distances(r), self.max_order, with_derivative=True)
        return t.movedim(0, -1), dt.movedim(0, -1) * (2.0 / (self.r_max - self.r_min))


class RadialBasis(nn.Module):
    """G_n(d) = T_n(2 d / rad_cutoff - 1) fc(d): ``basis(distances)`` is (E, rad_order + 1).

    ``min_cutoff`` is accepted as aenet-python accepts it: the descriptor, not the
    basis, drops neighbours closer than it.
    """

    def __init__(self, rad_order: int, rad_cutoff: float, min_cutoff: float = DEFAULT_MIN_CUTOFF,
                 dtype: torch.dtype = torch.float64):
        super().__init__()
        self.cheb = ChebyshevPolynomials(rad_order, 0.0, rad_cutoff, dtype)  # the domain is [0, Rc], as in Fortran
        self.rad_order, self.rad_cutoff, self.min_cutoff = int(rad_order), float(rad_cutoff), float(min_cutoff)

    def forward(self, distances: torch.Tensor) -> torch.Tensor:
        return self.cheb(distances) * self.cheb.cutoff_function(distances, self.rad_cutoff).unsqueeze(-1)

    def forward_with_derivatives(self, distances: torch.Tensor) -> tuple:
        """(G, dG/dd), both (E, rad_order + 1)."""
        t, dt = self.cheb.evaluate_with_derivatives(distances)
        fc = self.cheb.cutoff_function(distances, self.rad_cutoff).unsqueeze(-1)
        dfc = self.cheb.cutoff_derivative(distances, self.rad_cutoff).unsqueeze(-1)
        return t * fc, dt * fc + t * dfc


class AngularBasis(nn.Module):
    """G_n = T_n(cos theta_ijk) fc(d_ij) fc(d_ik): ``basis(r_ij, r_ik, cos_theta)`` is (T, ang_order + 1).

    ``r_ij``/``r_ik`` are the distances d_ij, d_ik; ``min_cutoff`` is accepted as in ``RadialBasis``.
    """

    def __init__(self, ang_order: int, ang_cutoff: float, min_cutoff: float = DEFAULT_MIN_CUTOFF,
                 dtype: torch.dtype = torch.float64):
        super().__init__()
        self.cheb = ChebyshevPolynomials(ang_order, -1.0, 1.0, dtype)  # cos theta needs no rescaling
        self.ang_order, self.ang_cutoff, self.min_cutoff = int(ang_order), float(ang_cutoff), float(min_cutoff)

    def forward(self, r_ij: torch.Tensor, r_ik: torch.Tensor, cos_theta: torch.Tensor) -> torch.Tensor:
        fc = self.cheb.cutoff_function(r_ij, self.ang_cutoff) * self.cheb.cutoff_function(r_ik, self.ang_cutoff)
        return self.cheb(cos_theta) * fc.unsqueeze(-1)

    def forward_with_derivatives(self, r_ij: torch.Tensor, r_ik: torch.Tensor, cos_theta: torch.Tensor) -> tuple:
        """(G, dG/dcos, dG/dd_ij, dG/dd_ik), each (T, ang_order + 1)."""
        t, dt = self.cheb.evaluate_with_derivatives(cos_theta)
        fc_j, fc_k = (self.cheb.cutoff_function(r, self.ang_cutoff).unsqueeze(-1) for r in (r_ij, r_ik))
        dfc_j, dfc_k = (self.cheb.cutoff_derivative(r, self.ang_cutoff).unsqueeze(-1) for r in (r_ij, r_ik))
        return t * fc_j * fc_k, dt * fc_j * fc_k, t * dfc_j * fc_k, t * fc_j * dfc_k
