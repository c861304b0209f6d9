"""Ray/primitive intersections against hand-computed hits."""

from __future__ import annotations

import math

import torch

from taskbalance.data.synthetic.geometry import (
    camera_rays,
    intersect_boxes,
    intersect_cones,
    intersect_cylinders,
    intersect_room,
    intersect_spheres,
    intrinsics,
)
from taskbalance.data.synthetic.scenes import look_at


def rays(*pairs):
    o = torch.tensor([p[0] for p in pairs], dtype=torch.float32)
    d = torch.tensor([p[1] for p in pairs], dtype=torch.float32)
    return o, d


def test_sphere_hits_and_misses():
    o, d = rays(([0, 0.5, -5], [0, 0, 1]), ([0, 1.4, -5], [0, 0, 2]), ([0, 3, -5], [0, 0, 1]))
    hits = intersect_spheres(o, d, torch.tensor([[0.0, 0.5, 0.0, 1.0]]))
    assert math.isclose(float(hits.t[0]), 4.0, abs_tol=1e-5)
    torch.testing.assert_close(hits.normal[0], torch.tensor([0.0, 0.0, -1.0]))
    assert int(hits.part[1]) == 3 and math.isinf(float(hits.t[2]))  # upper half; miss
    assert math.isclose(float(hits.t[1]) * 2, 5 - math.sqrt(1 - 0.9**2), abs_tol=1e-5)  # t scales with |d|


def test_rotated_box_faces():
    box = torch.tensor([[0.0, 0.5, 0.0, 1.0, 0.5, 1.0, math.pi / 4]])
    o, d = rays(([0, 0.5, -5], [0, 0, 1]), ([0, 5, 0], [0, -1, 0]))
    hits = intersect_boxes(o, d, box)
    assert math.isclose(float(hits.t[0]), 5 - math.sqrt(2), abs_tol=1e-5)  # a vertical edge of the rotated box
    assert int(hits.part[0]) == 2 and int(hits.part[1]) == 1
    assert math.isclose(float(hits.t[1]), 4.0, abs_tol=1e-5)
    torch.testing.assert_close(hits.normal[1], torch.tensor([0.0, 1.0, 0.0]))


def test_cylinder_side_and_cap():
    cylinder = torch.tensor([[0.0, 0.0, 0.0, 0.5, 1.0]])
    o, d = rays(([0, 0.5, -5], [0, 0, 1]), ([0.1, 5, 0], [0, -1, 0]), ([0, 1.5, -5], [0, 0, 1]))
    hits = intersect_cylinders(o, d, cylinder)
    assert math.isclose(float(hits.t[0]), 4.5, abs_tol=1e-5) and int(hits.part[0]) == 6
    torch.testing.assert_close(hits.normal[0], torch.tensor([0.0, 0.0, -1.0]))
    assert math.isclose(float(hits.t[1]), 4.0, abs_tol=1e-5) and int(hits.part[1]) == 5
    assert math.isinf(float(hits.t[2]))  # passes above the top


def test_cone_lateral_surface():
    cone = torch.tensor([[0.0, 0.0, 0.0, 1.0, 2.0]])  # radius 1 at y=0, apex at y=2
    o, d = rays(([0, 1, -5], [0, 0, 1]), ([0, 2.5, -5], [0, 0, 1]))
    hits = intersect_cones(o, d, cone)
    assert math.isclose(float(hits.t[0]), 4.5, abs_tol=1e-5)  # radius 0.5 at half height
    expected = torch.tensor([0.0, 0.5, -1.0]) / math.sqrt(1.25)
    torch.testing.assert_close(hits.normal[0], expected)
    assert math.isinf(float(hits.t[1]))


def test_room_faces_and_depth_rays():
    o, d = rays(([0, 1, 0], [0, -1, 0]), ([0, 1, 0], [1, 0, 0]), ([0, 1, 0], [0, 0, -1]))
    t, face, normal = intersect_room(o, d, 4.0, 6.0, 3.0)
    torch.testing.assert_close(t, torch.tensor([1.0, 2.0, 3.0]))
    assert face.tolist() == [0, 3, 4]
    torch.testing.assert_close(normal, torch.tensor([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
    rotation = look_at(torch.tensor([0.0, 1.0, 0.0]), torch.tensor([0.0, 1.0, 1.0]))
    directions = camera_rays((4, 6), intrinsics((4, 6)), rotation[None])
    camera_z = torch.einsum("ij,vhwj->vhwi", rotation, directions)[..., 2]
    torch.testing.assert_close(camera_z, torch.ones(1, 4, 6))  # t along these rays is z-depth
