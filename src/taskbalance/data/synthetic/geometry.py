"""Vectorised ray casting: pinhole rays and ray/primitive intersections.

Rays are ``o + t·d`` with ``o``, ``d`` of shape (R, 3). Camera rays are built with a unit *z* component in the
camera frame, so the hit parameter ``t`` is directly the z-depth in metres. Every intersection function
returns, for each ray, the closest hit among its primitives as a :class:`Hits` (``t = inf`` on a miss).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "Hits",
    "camera_rays",
    "closest",
    "intersect_boxes",
    "intersect_cones",
    "intersect_cylinders",
    "intersect_room",
    "intersect_spheres",
    "intrinsics",
]

EPS = 1e-4
_INF = float("inf")


@dataclass
class Hits:
    """Closest hits of R rays: parameter ``t`` (R,), outward unit ``normal`` (R, 3), ``part`` id (R,),
    ``index`` of the primitive within its kind (R,)."""

    t: Tensor
    normal: Tensor
    part: Tensor
    index: Tensor


def intrinsics(resolution: tuple[int, int], hfov_degrees: float = 65.0) -> Tensor:
    """(fx, fy, cx, cy) of a square-pixel pinhole camera with horizontal field of view ``hfov_degrees``."""
    height, width = resolution
    focal = width / (2.0 * math.tan(math.radians(hfov_degrees) / 2.0))
    return torch.tensor([focal, focal, width / 2.0, height / 2.0])


def camera_rays(resolution: tuple[int, int], camera_intrinsics: Tensor, rotations: Tensor) -> Tensor:
    """World directions (V, H, W, 3) through pixel centres; camera-frame z component is 1 (t = depth)."""
    height, width = resolution
    fx, fy, cx, cy = camera_intrinsics.tolist()
    v, u = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    local = torch.stack([(u - cx) / fx, (v - cy) / fy, torch.ones_like(u)], dim=-1)
    return torch.einsum("hwi,vij->vhwj", local, rotations)


def _first(t: Tensor) -> tuple[Tensor, Tensor]:
    """Closest valid hit over the primitives axis (R, N) → (t (R,), index (R,))."""
    if t.shape[1] == 0:
        return torch.full(t.shape[:1], _INF), torch.zeros(t.shape[:1], dtype=torch.long)
    return t.min(dim=1)


def _miss(r: int) -> Hits:
    return Hits(
        torch.full((r,), _INF), torch.zeros(r, 3), torch.zeros(r, dtype=torch.long), torch.zeros(r, dtype=torch.long)
    )


def intersect_spheres(o: Tensor, d: Tensor, spheres: Tensor) -> Hits:
    """Spheres (N, 4: x, y, z, r); parts 3 (upper half) and 4 (lower half)."""
    if len(spheres) == 0:
        return _miss(len(o))
    oc = o[:, None, :] - spheres[None, :, :3]
    a = (d * d).sum(-1, keepdim=True)
    b = (oc * d[:, None, :]).sum(-1)
    c = (oc * oc).sum(-1) - spheres[None, :, 3] ** 2
    disc = b * b - a * c
    t = (-b - disc.clamp_min(0).sqrt()) / a
    t = torch.where((disc > 0) & (t > EPS), t, _INF)
    t, index = _first(t)
    centre = spheres[index]
    point = o + t.clamp(max=1e6)[:, None] * d
    normal = (point - centre[:, :3]) / centre[:, 3:4]
    part = torch.where(point[:, 1] > centre[:, 1], 3, 4)
    return Hits(t, normal, part, index)


def _rotate_y(v: Tensor, angle: Tensor) -> Tensor:
    """Rotate vectors (..., 3) about +y by ``angle`` (broadcast against ``v[..., 0]``)."""
    cos, sin = angle.cos(), angle.sin()
    x, y, z = v.unbind(-1)
    return torch.stack([cos * x + sin * z, y, -sin * x + cos * z], dim=-1)


def intersect_boxes(o: Tensor, d: Tensor, boxes: Tensor) -> Hits:
    """Boxes rotated about y (N, 7: centre, half sizes, yaw); parts 1 (top/bottom face) and 2 (side faces)."""
    if len(boxes) == 0:
        return _miss(len(o))
    yaw = boxes[None, :, 6]
    local_o = _rotate_y(o[:, None, :] - boxes[None, :, :3], -yaw)
    local_d = _rotate_y(d[:, None, :].expand(-1, len(boxes), -1), -yaw)
    safe_d = torch.where(local_d.abs() < 1e-12, torch.full_like(local_d, 1e-12), local_d)
    half = boxes[None, :, 3:6]
    t1, t2 = (-half - local_o) / safe_d, (half - local_o) / safe_d
    near, axis = torch.minimum(t1, t2).max(dim=-1)
    far = torch.maximum(t1, t2).min(dim=-1).values
    t = torch.where((near <= far) & (near > EPS), near, _INF)
    t, index = _first(t)
    rows = torch.arange(len(o))
    hit_axis = axis[rows, index]
    sign = -torch.sign(local_d[rows, index, hit_axis])
    local_normal = torch.nn.functional.one_hot(hit_axis, 3).float() * sign[:, None]
    normal = _rotate_y(local_normal, boxes[index, 6])
    part = torch.where(hit_axis == 1, 1, 2)
    return Hits(t, normal, part, index)


def intersect_cylinders(o: Tensor, d: Tensor, cylinders: Tensor) -> Hits:
    """Upright cylinders standing on their base (N, 5: base x, y, z, r, height); parts 5 (top cap), 6 (side).

    The bottom cap is not modelled: objects stand on the floor and every camera is above it.
    """
    if len(cylinders) == 0:
        return _miss(len(o))
    ox, oz = o[:, None, 0] - cylinders[None, :, 0], o[:, None, 2] - cylinders[None, :, 2]
    dx, dz, dy = d[:, None, 0], d[:, None, 2], d[:, None, 1]
    radius, bottom, top = cylinders[None, :, 3], cylinders[None, :, 1], cylinders[None, :, 1] + cylinders[None, :, 4]
    a = (dx * dx + dz * dz).clamp_min(1e-12)
    b = ox * dx + oz * dz
    c = ox * ox + oz * oz - radius**2
    disc = b * b - a * c
    t_side = (-b - disc.clamp_min(0).sqrt()) / a
    y_side = o[:, None, 1] + t_side * dy
    t_side = torch.where((disc > 0) & (t_side > EPS) & (y_side >= bottom) & (y_side <= top), t_side, _INF)
    safe_dy = torch.where(dy.abs() < 1e-12, torch.full_like(dy, 1e-12), dy)
    t_cap = (top - o[:, None, 1]) / safe_dy
    on_cap = (ox + t_cap * dx) ** 2 + (oz + t_cap * dz) ** 2 <= radius**2
    t_cap = torch.where(on_cap & (t_cap > EPS), t_cap, _INF)
    is_cap = t_cap < t_side
    t, index = _first(torch.minimum(t_side, t_cap))
    rows = torch.arange(len(o))
    cap = is_cap[rows, index]
    chosen = cylinders[index]
    point = o + t.clamp(max=1e6)[:, None] * d
    side_normal = torch.stack([point[:, 0] - chosen[:, 0], torch.zeros_like(t), point[:, 2] - chosen[:, 2]], -1)
    side_normal = side_normal / side_normal.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    normal = torch.where(cap[:, None], torch.tensor([0.0, 1.0, 0.0]), side_normal)
    return Hits(t, normal, torch.where(cap, 5, 6), index)


def intersect_cones(o: Tensor, d: Tensor, cones: Tensor) -> Hits:
    """Upright cones, apex up (N, 5: base x, y, z, r, height); part 6 (lateral surface)."""
    if len(cones) == 0:
        return _miss(len(o))
    ox, oz = o[:, None, 0] - cones[None, :, 0], o[:, None, 2] - cones[None, :, 2]
    dx, dy, dz = d[:, None, 0], d[:, None, 1], d[:, None, 2]
    height = cones[None, :, 4]
    k2 = (cones[None, :, 3] / height) ** 2
    apex_gap = cones[None, :, 1] + height - o[:, None, 1]  # Y(t) = apex_gap - t·dy: distance below the apex
    qa = dx * dx + dz * dz - k2 * dy * dy
    qa = torch.where(qa.abs() < 1e-12, torch.full_like(qa, 1e-12), qa)
    qb = ox * dx + oz * dz + k2 * apex_gap * dy
    qc = ox * ox + oz * oz - k2 * apex_gap**2
    disc = qb * qb - qa * qc
    root = disc.clamp_min(0).sqrt()
    best = torch.full_like(qa, _INF)
    for t_root in ((-qb - root) / qa, (-qb + root) / qa):
        below_apex = apex_gap - t_root * dy
        valid = (disc > 0) & (t_root > EPS) & (below_apex >= 0) & (below_apex <= height)
        best = torch.minimum(best, torch.where(valid, t_root, _INF))
    t, index = _first(best)
    chosen = cones[index]
    point = o + t.clamp(max=1e6)[:, None] * d
    gap = chosen[:, 1] + chosen[:, 4] - point[:, 1]
    normal = torch.stack(
        [point[:, 0] - chosen[:, 0], (chosen[:, 3] / chosen[:, 4]) ** 2 * gap, point[:, 2] - chosen[:, 2]], -1
    )
    normal = normal / normal.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return Hits(t, normal, torch.full_like(index, 6), index)


def intersect_room(o: Tensor, d: Tensor, width: float, depth: float, height: float) -> tuple[Tensor, Tensor, Tensor]:
    """Where rays starting inside the room leave it: (t (R,), face (R,), inward normal (R, 3)).

    Faces: 0 floor, 1 ceiling, 2 wall x = -w/2, 3 wall x = +w/2, 4 wall z = -d/2, 5 wall z = +d/2.
    """
    low = torch.tensor([-width / 2, 0.0, -depth / 2])
    high = torch.tensor([width / 2, height, depth / 2])
    safe_d = torch.where(d.abs() < 1e-12, torch.full_like(d, 1e-12), d)
    t_axes = torch.where(safe_d > 0, (high - o) / safe_d, (low - o) / safe_d)
    t, axis = t_axes.min(dim=1)
    positive = torch.gather(safe_d, 1, axis[:, None])[:, 0] > 0
    face = torch.tensor([2, 0, 4])[axis] + positive.long()
    normal = -torch.nn.functional.one_hot(axis, 3).float() * torch.where(positive, 1.0, -1.0)[:, None]
    return t, face, normal


def closest(candidates: list[tuple[Hits, int]]) -> tuple[Hits, Tensor]:
    """The nearest of several kinds' hits; returns the merged hits and the winning kind's label per ray."""
    t = torch.stack([hits.t for hits, _ in candidates], dim=1)
    best, which = t.min(dim=1)
    rows = torch.arange(len(best))
    normal = torch.stack([hits.normal for hits, _ in candidates], dim=1)[rows, which]
    part = torch.stack([hits.part for hits, _ in candidates], dim=1)[rows, which]
    index = torch.stack([hits.index for hits, _ in candidates], dim=1)[rows, which]
    labels = torch.tensor([label for _, label in candidates])[which]
    return Hits(best, normal, part, index), labels
