"""Specialised TR 38.901 step 11 (channel coefficients) for a single-polarised planar BS array and a single-antenna
UE, on Sionna's rays: the same numbers as Sionna's ``ChannelCoefficientsGenerator`` (the reference), faster.

Why it is faster: Sionna evaluates one complex exponential per ray x BS element (array phase) and materialises the
per-ray tensor [ray, ant, time] before summing rays. Here the BS element positions are separable,
``d[a * inner + i] = d[a * inner] + (d[i] - d[0])`` (``grid_positions``: inner = rows of a UPA, a divisor of the
element count near its square root for a ULA, whose positions are an arithmetic progression), so the array phase of
a ray factorises into ``exp(j k r.d_col) * exp(j k r.d_row)``: [ray, outer] + [ray, inner] exponentials, e.g. 16
instead of 64 for a 64-element ULA. The element field (single polarisation: one pattern for every element), the UE
phase and the step-10/XPR polarisation term are one complex scalar per ray, the Doppler term one per ray x time.
The sum over the rays of each (sub-)cluster is a batched matrix product ``acol^T @ (arow * doppler * coef)``:
[col, ray] @ [ray, row * time] -> [col * row, time], which is exactly the antenna order ``ant = col * rows + row`` of
Sionna's ``PanelArray``. Phases are evaluated as ``complex(cos x, sin x)`` (several x faster than ``torch.polar`` on
CPU), dot products with three-vectors as matrix products, and the rays of the two strongest clusters are put in
sub-cluster order once on the per-ray angles rather than on the per-ray x element tensors.

Conventions reproduced from ``sionna/phy/channel/tr38901/channel_coefficients.py`` (Sionna 2.2): GCS -> LCS angles
(7.1-7/8), field rotation by psi (7.1-15), phase matrix [[e0, e1/sqrt(xpr)], [e2/sqrt(xpr), e3]] (7.5-22) and
[[1, 0], [0, -1]] for LOS, ray power ``sqrt(P_n / M)``, optional per-ray and LOS blockage, sub-clusters of the two
strongest clusters (Table 7.5-5 ray groups, delay offsets 0, 1.28, 2.56 c_DS), weak clusters in power order, then
sorting by delay; the LOS ray added to the first path with the K-factor weights (7.5-30).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from icwm.config import check

SPEED_OF_LIGHT = 299792458.0
# Table 7.5-5: rays (0-based) of the three sub-clusters; RAY_ORDER makes each sub-cluster a contiguous slice.
SUB_CLUSTERS = ((0, 1, 2, 3, 4, 5, 6, 7, 18, 19), (8, 9, 10, 11, 16, 17), (12, 13, 14, 15))
RAY_ORDER = tuple(i for group in SUB_CLUSTERS for i in group)
SUB_DELAY_OFFSETS = (0.0, 1.28, 2.56)


@dataclass
class RayFields:
    """Carrier-independent per-ray terms (``ray_fields``): the same for every band seen through arrays of the same
    element pattern and orientation, so a dual-band drop computes them once (``shared_rays``).

    coef: [b, x, u, ...rays] complex, field . phase matrix . field (7.5-22 without array phases and Doppler).
    r_tx, r_rx: [b, x, u, ...rays, 3] departure / arrival unit vectors.  lead: number of ray axes after [b, x, u].
    """

    coef: torch.Tensor
    r_tx: torch.Tensor
    r_rx: torch.Tensor
    lead: int


def unit_vector(theta: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    """Unit vector (7.1-6).  theta, phi: [...] rad.  Returns: [..., 3]."""
    st = torch.sin(theta)
    return torch.stack([st * torch.cos(phi), st * torch.sin(phi), torch.cos(theta)], -1)


def rotation(orient: torch.Tensor) -> torch.Tensor:
    """Forward rotation matrix (7.1-4).  orient: [..., 3] (alpha, beta, gamma) rad.  Returns: [..., 3, 3]."""
    ca, sa = torch.cos(orient[..., 0]), torch.sin(orient[..., 0])
    cb, sb = torch.cos(orient[..., 1]), torch.sin(orient[..., 1])
    cc, sc = torch.cos(orient[..., 2]), torch.sin(orient[..., 2])
    rows = [torch.stack([ca * cb, ca * sb * sc - sa * cc, ca * sb * cc + sa * sc], -1),
            torch.stack([sa * cb, sa * sb * sc + ca * cc, sa * sb * cc - ca * sc], -1),
            torch.stack([-sb, cb * sc, cb * cc], -1)]
    return torch.stack(rows, -2)


def global_field(array, orient: torch.Tensor, theta: torch.Tensor, phi: torch.Tensor,
                 rho: torch.Tensor | None = None) -> torch.Tensor:
    """Element field of ``array`` (polarisation 1) towards GCS direction (theta, phi), in GCS components.

    Args:
        array: Sionna ``PanelArray`` (its ``ant_pol1.field``).  orient: [..., 3] broadcastable to theta.
        theta, phi: [...] rad (GCS).  rho: [..., 3] their unit vector if already computed.

    Returns:
        f: [..., 2] float (theta and phi components, 7.1-11).
    """
    rho = unit_vector(theta, phi) if rho is None else rho
    zero = not bool(orient.any())           # the usual case: R = I, psi = atan2(0, sin theta)
    local = rho if zero else (rotation(orient) * rho.unsqueeze(-1)).sum(-2)    # R^T rho
    theta_l = torch.acos(local[..., 2].clamp(-1.0, 1.0))
    phi_l = torch.atan2(local[..., 1], local[..., 0])
    f_t, f_p = array.ant_pol1.field(theta_l, phi_l)
    if zero:
        sign = torch.where(torch.sin(theta) < 0, -1.0, 1.0).to(f_t.dtype)    # cos(psi); sin(psi) = 0
        return torch.stack([sign * f_t, sign * f_p], -1)
    a, b, c = orient[..., 0], orient[..., 1], orient[..., 2]
    re = torch.sin(c) * torch.cos(theta) * torch.sin(phi - a) + torch.cos(c) * (
        torch.cos(b) * torch.sin(theta) - torch.sin(b) * torch.cos(theta) * torch.cos(phi - a))
    im = torch.sin(c) * torch.cos(phi - a) + torch.sin(b) * torch.cos(c) * torch.sin(phi - a)
    psi = torch.atan2(im, re)
    cp, sp = torch.cos(psi), torch.sin(psi)
    return torch.stack([cp * f_t - sp * f_p, sp * f_t + cp * f_p], -1)


def grid_positions(tx_array) -> tuple[torch.Tensor, torch.Tensor]:
    """Separable split of the element positions of a single-polarised one-panel array: ``ant = a * inner + i`` with
    ``d[ant] = d_col[a] + d_row[i]``. A UPA splits into its columns and rows (inner = rows); a ULA (one row) into a
    virtual grid of ``inner`` = the largest divisor of its element count not above the square root (uniform spacing).

    Returns:
        d_col: [outer, 3] positions of the elements ``a * inner``.  d_row: [inner, 3] offsets ``d[i] - d[0]``.
    Raises:
        ValueError: dual polarisation or positions that are not separable.
    """
    check(tx_array.polarization == "single", "tx_array.polarization", "'single' for the fast path",
          tx_array.polarization)
    rows = int(getattr(tx_array, "num_rows_per_panel", 0) or 0)
    pos = tx_array.ant_pos
    n_ant = pos.shape[0]
    check(rows >= 1 and n_ant % rows == 0 and int(getattr(tx_array, "num_panels", 1)) == 1, "tx_array",
          "a one-panel PanelArray with num_rows_per_panel dividing num_ant", (rows, n_ant))
    scale = float(pos.abs().max()) + 1e-12
    for inner in _inner_sizes(rows, n_ant):
        grid = pos.reshape(n_ant // inner, inner, 3)
        d_col, d_row = grid[:, 0], grid[0] - grid[0, :1]
        err = float((grid - d_col[:, None] - d_row[None]).abs().max())
        if err <= 1e-5 * scale:
            return d_col, d_row
    check(False, "tx_array.ant_pos", "element positions on a rows x cols grid", f"deviation {err:g}")


def _inner_sizes(rows: int, n_ant: int) -> list[int]:
    """Candidate inner sizes of ``grid_positions``: ``rows`` for a UPA; for a ULA the largest divisor of ``n_ant``
    not above ``sqrt(n_ant)`` (a virtual grid), then 1 (the plain ULA)."""
    if rows > 1:
        return [rows]
    return [max(d for d in range(1, math.isqrt(n_ant) + 1) if n_ant % d == 0), 1]


def _phase(x: torch.Tensor) -> torch.Tensor:
    """exp(j x) as ``complex(cos x, sin x)`` (``torch.polar`` is several x slower on CPU)."""
    return torch.complex(torch.cos(x), torch.sin(x))


def _dot(r: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Dot products of unit vectors with element positions, per BS: r [b, x, ..., 3], g [b, x, e, 3] -> [b, x, ..., e]."""
    flat = r.reshape(r.shape[0], r.shape[1], -1, 3)                            # [b, x, n, 3]
    return (flat @ g.transpose(-1, -2)).reshape(*r.shape[:-1], g.shape[-2])


def _bilinear(f_rx: torch.Tensor, h_phase: torch.Tensor, f_tx: torch.Tensor) -> torch.Tensor:
    """``f_rx^T h_phase f_tx`` over the last (polarisation) axes: [..., 2], [..., 2, 2], [..., 2] -> [...]."""
    t0 = h_phase[..., 0, 0] * f_tx[..., 0] + h_phase[..., 0, 1] * f_tx[..., 1]
    t1 = h_phase[..., 1, 0] * f_tx[..., 0] + h_phase[..., 1, 1] * f_tx[..., 1]
    return f_rx[..., 0] * t0 + f_rx[..., 1] * t1


def ray_fields(topology, zoa, aoa, zod, aod, tx_array, rx_array, h_phase) -> RayFields:
    """Carrier-independent per-ray factors of (7.5-22) for angles [b, x, u, ...rays] (rays = (cluster, ray), or (1,)
    for LOS): unit vectors and field . phase matrix . field (element patterns and BS orientations, no wavelength).

    Args:
        topology: Sionna ``Topology``.  zoa, aoa, zod, aod: [b, x, u, ...] rad.  tx_array, rx_array: see
        ``fast_coefficients`` (only their element patterns enter).  h_phase: [b, x, u, ..., 2, 2] or [2, 2] complex.
    """
    lead = zod.dim() - 3
    tx_o = topology.tx_orientations[:, :, None].reshape(*topology.tx_orientations.shape[:2], 1, *([1] * lead), 3)
    rx_o = topology.rx_orientations[:, None].reshape(topology.rx_orientations.shape[0], 1,
                                                     topology.rx_orientations.shape[1], *([1] * lead), 3)
    r_tx, r_rx = unit_vector(zod, aod), unit_vector(zoa, aoa)
    f_tx = global_field(tx_array, tx_o, zod, aod, r_tx).to(h_phase.dtype)
    f_rx = global_field(rx_array, rx_o, zoa, aoa, r_rx).to(h_phase.dtype)
    return RayFields(_bilinear(f_rx, h_phase, f_tx), r_tx, r_rx, lead)


def array_terms(topology, k_wave: torch.Tensor, fields: RayFields, t: torch.Tensor, tx_array, rx_array):
    """The wavelength-dependent per-ray factors on top of ``fields`` (``ray_fields``): UE and BS array phases and
    the Doppler term.

    Args:
        topology: Sionna ``Topology``.  k_wave: [] 2 pi / wavelength (1/m).  fields: ``RayFields`` [b, x, u, ...].
        t: [time] s.  tx_array, rx_array: see ``fast_coefficients`` (element positions at their wavelength).

    Returns:
        coef: [b, x, u, ...] complex (field . phase matrix . field, times the UE array phase).
        arow: [b, x, u, ..., row] complex.  acol: [b, x, u, ..., col] complex.  dop: [b, x, u, ..., time] complex.
    """
    coef, r_tx, r_rx, lead = fields.coef, fields.r_tx, fields.r_rx, fields.lead
    # UE (single element) phase, element rotated to the GCS as Sionna does (exactly 1 for an element at the origin)
    rot_rx = rotation(topology.rx_orientations)                                # [b, u, 3, 3]
    d_rx = (rot_rx @ rx_array.ant_pos[0].to(rot_rx.dtype)).reshape(rot_rx.shape[0], 1, rot_rx.shape[1],
                                                                   *([1] * lead), 3)
    if bool(d_rx.any()):
        coef = coef * _phase(k_wave * (r_rx * d_rx).sum(-1))
    d_col, d_row = grid_positions(tx_array)
    rot_tx = rotation(topology.tx_orientations)                                # [b, x, 3, 3]
    g_col = torch.einsum("bxij,cj->bxci", rot_tx, d_col.to(rot_tx.dtype))      # [b, x, col, 3] (GCS)
    g_row = torch.einsum("bxij,cj->bxci", rot_tx, d_row.to(rot_tx.dtype))      # [b, x, row, 3]
    acol = _phase(k_wave * _dot(r_tx, g_col))
    arow = _phase(k_wave * _dot(r_tx, g_row))
    dop = _phase(doppler_phase(topology, k_wave, r_rx, r_tx, lead, t))
    return coef, arow, acol, dop


def doppler_phase(topology, k_wave: torch.Tensor, r_rx, r_tx, lead: int, t: torch.Tensor) -> torch.Tensor:
    """k v.r_hat t of the moving end (``topology.moving_end``).  Returns: [b, x, u, ..., time] float."""
    v = topology.velocities
    if topology.moving_end == "rx":
        v, r = v[:, None], r_rx
    else:
        check(topology.moving_end == "tx", "topology.moving_end", "'rx' or 'tx'", topology.moving_end)
        v, r = v[:, :, None], r_tx
    v = v.reshape(*v.shape[:3], *([1] * lead), 3)
    return (k_wave * (r * v).sum(-1)).unsqueeze(-1) * t


def _db_scale(loss_db: torch.Tensor) -> torch.Tensor:
    return torch.pow(torch.tensor(10.0, dtype=loss_db.dtype, device=loss_db.device), -loss_db / 20.0)


def _cluster_sums(coef, arow, acol, dop, sub: bool) -> torch.Tensor:
    """Sum over the rays of each cluster (or of each of its three sub-clusters) of coef * arow * acol * dop.

    Args:
        coef: [b, x, u, n, m] complex.  arow: [b, x, u, n, m, row].  acol: [b, x, u, n, m, col].
        dop: [b, x, u, n, m, time].  sub: split into the Table 7.5-5 sub-clusters (needs m == 20 rays already in
        ``RAY_ORDER``, so that each sub-cluster is a contiguous slice).

    Returns:
        s: [b, x, u, n, g, col * row, time] complex, g = 3 with ``sub`` else 1; ant = col * rows + row.
    """
    b_ = (coef.unsqueeze(-1) * dop).unsqueeze(-2) * arow.unsqueeze(-1)          # [b, x, u, n, m, row, time]
    lead, (m, n_row, n_t) = b_.shape[:4], b_.shape[4:]
    b_ = b_.reshape(-1, m, n_row * n_t)
    a_t = acol.reshape(-1, m, acol.shape[-1]).transpose(1, 2)                   # [B, col, m]
    if sub:
        bounds = [0]
        for g in SUB_CLUSTERS:
            bounds.append(bounds[-1] + len(g))
        parts = [a_t[:, :, s:e] @ b_[:, s:e] for s, e in zip(bounds[:-1], bounds[1:])]
        s = torch.stack(parts, 1)                                               # [B, 3, col, row * time]
    else:
        s = (a_t @ b_).unsqueeze(1)
    return s.reshape(*lead, s.shape[1], -1, n_t)


def _reduce(s: torch.Tensor, rays, c_ds, sub: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Sionna's ``_step_11_reduce_nlos`` on per-cluster (sub-)sums: paths sorted by delay.

    Args:
        s: [b, x, u, n, g, ant, time] complex.  c_ds: [b, x, u] s.

    Returns:
        h: [b, x, u, path, ant, time] complex.  delays: [b, x, u, path] float.
    """
    if not sub:
        h, delays = s[:, :, :, :, 0], rays.delays
    else:
        powers, delays = rays.powers, rays.delays
        strongest_2 = getattr(rays, "strongest_cluster_indices", None)
        if strongest_2 is None:
            strongest = torch.argsort(powers, dim=-1, descending=True)
            strongest_2 = strongest[..., :2]
        else:
            rest = powers.scatter(-1, strongest_2, torch.full_like(strongest_2, -torch.inf, dtype=powers.dtype))
            rest = torch.argsort(rest, dim=-1, descending=True)[..., : powers.shape[-1] - 2]
            strongest = torch.cat([strongest_2, rest], -1)
        d_sorted = torch.gather(delays, 3, strongest)
        offsets = torch.tensor(SUB_DELAY_OFFSETS, dtype=delays.dtype, device=delays.device)
        d_sub = (d_sorted[..., :2].unsqueeze(-2) + offsets[:, None] * c_ds[..., None, None]).flatten(-2)
        idx = strongest[..., None, None, None].expand(-1, -1, -1, -1, *s.shape[4:])
        h_all = torch.gather(s, 3, idx)                                         # clusters in power order
        strong = h_all[:, :, :, :2].transpose(3, 4).flatten(3, 4)                # [sub1 x2, sub2 x2, sub3 x2]
        h = torch.cat([strong, h_all[:, :, :, 2:].sum(4)], 3)
        delays = torch.cat([d_sub, d_sorted[..., 2:]], 3)
    ind = torch.argsort(delays, dim=-1)
    delays = torch.gather(delays, 3, ind)
    h = torch.gather(h, 3, ind[..., None, None].expand(-1, -1, -1, -1, *h.shape[4:]))
    return h, delays


@dataclass
class SharedRays:
    """The band-independent part of step 11 for one set of rays and one topology (``shared_rays``).

    nlos: ``RayFields`` [b, x, u, n, m] of the rays (in ``RAY_ORDER`` with sub-clustering).
    scale: [b, x, u, n, m or 1] ray amplitudes ``sqrt(P_n / M)`` times the per-ray blockage if any.
    los: ``RayFields`` [b, x, u, 1] of the LOS ray.  subclustering: the rays' order was built for sub-clusters.
    """

    nlos: RayFields
    scale: torch.Tensor
    los: RayFields
    subclustering: bool


def shared_rays(rays, topology, tx_array, rx_array, subclustering: bool = True) -> SharedRays:
    """Step 11 terms without the wavelength: the same for every carrier and array size seen through arrays with the
    element patterns and orientations of ``tx_array`` / ``rx_array`` on ``topology``, so the bands of a dual-band drop
    compute them once and pass them to ``fast_coefficients`` (same numbers, bit for bit).

    Args:
        rays: Sionna ``Rays`` with ``phases`` [b, x, u, n, m, 4].  topology: Sionna ``Topology``.
        tx_array, rx_array: see ``fast_coefficients`` (their element patterns only).  subclustering: as there.
    """
    dtype = rays.aoa.dtype
    cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    order = torch.tensor(RAY_ORDER, device=rays.aoa.device) if subclustering else None
    ph = _phase(_in_order(rays.phases.to(dtype), order, -2))
    xs = torch.sqrt(1 / _in_order(rays.xpr, order)).to(cdtype)
    h_phase = torch.stack([ph[..., 0], xs * ph[..., 1], xs * ph[..., 2], ph[..., 3]], -1).unflatten(-1, (2, 2))
    angles = [_in_order(a, order) for a in (rays.zoa, rays.aoa, rays.zod, rays.aod)]
    nlos = ray_fields(topology, *angles, tx_array, rx_array, h_phase)
    scale = torch.sqrt(rays.powers / rays.aoa.shape[-1])[..., None]
    blockage = getattr(rays, "blockage_loss_db", None)
    if blockage is not None and not getattr(rays, "blockage_loss_applied_to_powers", False):
        bl = _db_scale(blockage)
        bl = _in_order(bl, order) if bl.dim() == nlos.coef.dim() else bl       # per-ray losses follow the rays
        scale = scale * bl.reshape(*bl.shape, *([1] * (nlos.coef.dim() - bl.dim())))
    los_ang = [a[..., None] for a in (topology.los_zoa, topology.los_aoa, topology.los_zod, topology.los_aod)]
    los_phase = torch.tensor([[1.0, 0.0], [0.0, -1.0]], dtype=cdtype, device=rays.aoa.device)
    return SharedRays(nlos, scale, ray_fields(topology, *los_ang, tx_array, rx_array, los_phase), subclustering)


def fast_coefficients(num_time_samples: int, sampling_frequency: float, k_factor: torch.Tensor, rays, topology,
                      c_ds: torch.Tensor | None, tx_array, rx_array, carrier_hz: float,
                      subclustering: bool = True, shared: SharedRays | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """TR 38.901 step 11 on Sionna's rays; drop-in for ``ChannelCoefficientsGenerator(...)(...)``.

    Args:
        num_time_samples: snapshots.  sampling_frequency: Hz (snapshot spacing 1 / sampling_frequency).
        k_factor: [b, x, u] linear Rician K-factor.  rays: Sionna ``Rays`` with ``phases`` [b, x, u, n, m, 4] set.
        topology: Sionna ``Topology`` (angles in rad).  c_ds: [b, x, u] cluster delay spread in s (subclustering).
        tx_array: one-panel single-polarised ``PanelArray``.  rx_array: single-element single-polarised array.
        carrier_hz: carrier frequency.  subclustering: split the two strongest clusters (UMa/UMi/RMa).
        shared: ``shared_rays`` of these rays and topology (arrays of the same element patterns), e.g. computed
            once for the two bands of a dual-band drop; None computes them here.

    Returns:
        h: [b, x, u, path, 1, ant, time] complex (ant = col * rows + row).  delays: [b, x, u, path] s.
    """
    check(getattr(rays, "phases", None) is not None, "rays.phases", "step-10 phases drawn by the caller", None)
    check(rx_array.num_ant == 1 and rx_array.polarization == "single", "rx_array",
          "a single-element, single-polarised receive array", rx_array.num_ant)
    check(num_time_samples >= 1, "num_time_samples", "an integer >= 1", num_time_samples)
    n_cl, m = rays.aoa.shape[-2:]
    check(not subclustering or m == 20, "rays", "20 rays per cluster with subclustering (Table 7.5-5)", m)
    check(not subclustering or n_cl >= 2, "rays", "at least 2 clusters with subclustering", n_cl)
    shared = shared_rays(rays, topology, tx_array, rx_array, subclustering) if shared is None else shared
    check(shared.subclustering == subclustering, "shared.subclustering", "the call's subclustering",
          shared.subclustering)
    dtype = rays.aoa.dtype
    lam = torch.tensor(SPEED_OF_LIGHT / carrier_hz, dtype=dtype, device=rays.aoa.device)
    k_wave = 2 * math.pi / lam              # rounded as Sionna rounds it: phases of 1e4 rad amplify any difference
    t = torch.arange(num_time_samples, dtype=dtype, device=rays.aoa.device) / sampling_frequency
    coef, arow, acol, dop = array_terms(topology, k_wave, shared.nlos, t, tx_array, rx_array)
    s = _cluster_sums(coef * shared.scale, arow, acol, dop, subclustering)
    h_nlos, delays = _reduce(s, rays, c_ds, subclustering)
    h = los_combine(h_nlos, topology, k_factor, lam, t, tx_array, rx_array, rays, shared.los)
    return h.unsqueeze(4), delays


def _in_order(x: torch.Tensor, order: torch.Tensor | None, dim: int = -1) -> torch.Tensor:
    """``x`` with its ray axis ``dim`` in ``order`` (sub-cluster order), or unchanged when ``order`` is None."""
    return x if order is None else x.index_select(dim, order)


def los_combine(h_nlos: torch.Tensor, topology, k_factor, lam: torch.Tensor, t, tx_array, rx_array,
                rays, fields: RayFields) -> torch.Tensor:
    """Add the LOS ray to the first path of LOS links with the K-factor weights (7.5-29/30).

    Args:
        h_nlos: [b, x, u, path, ant, time] complex.  k_factor: [b, x, u].  lam: [] wavelength in m.
        t: [time] s.  rays: Sionna ``Rays`` (optional ``los_blockage_loss_db`` [b, x, u]).
        fields: the LOS ray's ``RayFields`` [b, x, u, 1] (``SharedRays.los``).

    Returns:
        h: [b, x, u, path, ant, time] complex (NLOS links unchanged).
    """
    coef, arow, acol, dop = array_terms(topology, 2 * math.pi / lam, fields, t, tx_array, rx_array)
    coef = coef * _phase(-2 * math.pi * topology.distance_3d[..., None] / lam)   # Sionna's order of operations
    los_block = getattr(rays, "los_blockage_loss_db", None)
    if los_block is not None:
        coef = coef * _db_scale(los_block).reshape(coef.shape)
    arr = (coef[..., None, None] * acol[..., :, None] * arow[..., None, :]).flatten(-2)    # [b, x, u, 1, ant]
    h_los = (arr[..., None] * dop[..., None, :])[:, :, :, 0]                              # [b, x, u, ant, time]
    k = k_factor.to(t.dtype)
    w_los, w_nlos = torch.sqrt(k / (k + 1)), torch.sqrt(1 / (k + 1))
    first = w_los[..., None, None] * h_los + w_nlos[..., None, None] * h_nlos[:, :, :, 0]
    h_l = torch.cat([first.unsqueeze(3), w_nlos[..., None, None, None] * h_nlos[:, :, :, 1:]], 3)
    return torch.where(topology.los[..., None, None, None], h_l, h_nlos)
