"""The contraction of sparse descriptor derivatives with dE/dG, forward and backward, in fused kernels.

``Contraction`` maps dE/dG (N, F) to the gradient of sum(dE/dG * G) with
respect to the positions (N, 3); ``VectorGradients`` to its parts per
relative vector (each radial edge's r_ij, each triplet's r_ij and r_ik), which
the virial needs.  Their backward passes are the transposed maps, written
out rather than left to autograd.

The per-edge and per-triplet work is plain torch (``_vectors``,
``_coefficient_rows``), which training compiles (``aenet_core.compiled``):
each gather-multiply-sum becomes one loop over the edges and triplets instead
of one pass over memory per operation.  Sums over atoms stay in eager kernels: sums over each centre's edges and triplets (they
are sorted by centre) are products with a sparse CSR matrix of ones, sums over
neighbours a scatter.  Both are deterministic on the CPU, so a compiled run
gives the same numbers every time (and agrees with an uncompiled one to
rounding).
"""
import torch

from aenet_core import compiled
from aenet_core.backend import sum_columns


def _vectors(g, center, triplet_center, neighbor_spin, triplet_spin, dG_dd, unit, dG_dcos, dG_ddij, dG_ddik,
             dcos_drj, dcos_drk, unit_ij, unit_ik, nr: int, na: int):
    """d/dr of sum(g * G) per relative vector: (3, E) per edge, (3, T) per triplet for r_ij and for r_ik."""
    gt = g.t()
    g_rad = gt[:nr].index_select(1, center)
    g_ang = gt[nr: nr + na].index_select(1, triplet_center)
    if neighbor_spin is not None:  # the typespin-weighted second set of features
        g_rad = g_rad + neighbor_spin * gt[nr + na: 2 * nr + na].index_select(1, center)
        g_ang = g_ang + triplet_spin * gt[2 * nr + na:].index_select(1, triplet_center)
    radial = unit * (g_rad * dG_dd).sum(0)
    via_cos = (g_ang * dG_dcos).sum(0)
    on_j = dcos_drj * via_cos + unit_ij * (g_ang * dG_ddij).sum(0)
    on_k = dcos_drk * via_cos + unit_ik * (g_ang * dG_ddik).sum(0)
    return radial, on_j, on_k


def _atom_terms(*args):
    """``_vectors`` laid out for ``positions_gradient``'s sums over atoms."""
    return laid_out(*_vectors(*args))


def laid_out(radial, on_j, on_k):
    """What each edge and triplet adds to its centre, (E, 3) and (T, 3), and what each adds to its neighbours j
    and k, (3, E + 2T): the last is also d/dr of every relative vector, edges' r_ij then triplets' r_ij, r_ik."""
    return -radial.t().contiguous(), -(on_j + on_k).t().contiguous(), torch.cat([radial, on_j, on_k], dim=1)


def positions_gradient(d, on_edge_center, on_triplet_center, on_neighbors):
    """The gradient with respect to the positions (N, 3) from ``laid_out``'s terms, summed over atoms as
    ``Contraction`` sums them (differentiable: the virial path back-propagates through it)."""
    dtype = on_edge_center.dtype  # the wider of dE/dG's and the derivatives'
    on_centers = d.segment_sums("edges", dtype) @ on_edge_center
    on_centers = on_centers + d.segment_sums("triplets", dtype) @ on_triplet_center
    return on_centers + sum_columns(on_neighbors, d.neighbor_terms_index, d.n_atoms, d.backend).t()


def _coefficient_rows(grad_radial, grad_j, grad_k, dG_dd, unit, dG_dcos, dG_ddij, dG_ddik, dcos_drj, dcos_drk,
                      unit_ij, unit_ik):
    """From the gradients with respect to ``_vectors``' outputs, what each edge (E, radial features) and each
    triplet (T, angular features) adds to the gradient of its centre's features (of the plain set; the
    typespin-weighted set's are these times the typespins)."""
    radial = dG_dd * (unit * grad_radial).sum(0)
    angular = (dG_dcos * (dcos_drj * grad_j + dcos_drk * grad_k).sum(0) + dG_ddij * (unit_ij * grad_j).sum(0)
               + dG_ddik * (unit_ik * grad_k).sum(0))
    return radial.t().contiguous(), angular.t().contiguous()


def _coefficient_rows_from_atoms(grad_positions, neighbor, center, neighbor_j, neighbor_k, triplet_center, *args):
    """``_coefficient_rows`` from the gradient with respect to the positions (N, 3)."""
    go = grad_positions.t()
    on_center = go.index_select(1, triplet_center)
    return _coefficient_rows(go.index_select(1, neighbor) - go.index_select(1, center),
                             go.index_select(1, neighbor_j) - on_center, go.index_select(1, neighbor_k) - on_center,
                             *args)


def _inputs(d):
    return (d.center_idx, d.triplet_center_idx, d.neighbor_typespin, d.triplet_typespin, *_coefficients(d),
            d.n_radial, d.n_angular)


def _coefficients(d):
    return (d.radial_dG_dd, d.radial_unit, d.angular_dG_dcos, d.angular_dG_ddij, d.angular_dG_ddik, d.dcos_drj,
            d.dcos_drk, d.unit_ij, d.unit_ik)


def _feature_gradient(d, radial_rows, angular_rows):
    """dE/dG (N, F) from the per-edge and per-triplet rows of ``_coefficient_rows``."""
    dtype = radial_rows.dtype
    blocks = [d.segment_sums("edges", dtype) @ radial_rows, d.segment_sums("triplets", dtype) @ angular_rows]
    if d.multi:
        blocks += [d.segment_sums("edges", dtype, spin=True) @ radial_rows,
                   d.segment_sums("triplets", dtype, spin=True) @ angular_rows]
    return torch.cat(blocks, dim=1)


class Contraction(torch.autograd.Function):
    """The gradient (N, 3) of sum(dE/dG * G) with respect to the positions, from dE/dG (N, F) and a
    ``LocalDerivatives``."""

    @staticmethod
    def forward(ctx, grad_features, derivatives):
        d = ctx.derivatives = derivatives
        return positions_gradient(d, *compiled.run(_atom_terms, grad_features, *_inputs(d)))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_positions):
        d = ctx.derivatives
        rows = compiled.run(_coefficient_rows_from_atoms, grad_positions, d.neighbor_idx, d.center_idx,
                            d.neighbor_j_idx, d.neighbor_k_idx, d.triplet_center_idx, *_coefficients(d))
        return _feature_gradient(d, *rows), None


class VectorGradients(torch.autograd.Function):
    """(radial (3, E), on_j (3, T), on_k (3, T)) of ``_vectors`` from dE/dG (N, F) and a ``LocalDerivatives``."""

    @staticmethod
    def forward(ctx, grad_features, derivatives):
        ctx.derivatives = derivatives
        return compiled.run(_vectors, grad_features, *_inputs(derivatives))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_radial, grad_j, grad_k):
        d = ctx.derivatives
        grads = [torch.zeros_like(like) if grad is None else grad
                 for grad, like in ((grad_radial, d.radial_unit), (grad_j, d.unit_ij), (grad_k, d.unit_ik))]
        rows = compiled.run(_coefficient_rows, *grads, *_coefficients(d))
        return _feature_gradient(d, *rows), None
