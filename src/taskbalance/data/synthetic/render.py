"""From a :class:`SceneSpec` and cameras to images and exact labels for all six tasks.

One call renders every view of a scene at once (rays vectorised over views and pixels). Labels come from
the same ray hits as the image, so they agree exactly: class and part of the hit primitive, z-depth,
camera-frame normals facing the camera, saliency = object mask, edges = class boundaries plus occlusion
boundaries (a different surface with a depth jump of more than ``OCCLUSION_JUMP`` relative).
Images: per-class procedural textures, Lambertian shading from a point light with hard shadows cast by
the objects, per-view exposure and Gaussian sensor noise.
"""

from __future__ import annotations

import torch
from torch import Tensor

from taskbalance.data.edges import label_boundaries, neighbour_mask
from taskbalance.data.synthetic.geometry import (
    EPS,
    Hits,
    camera_rays,
    closest,
    intersect_boxes,
    intersect_cones,
    intersect_cylinders,
    intersect_room,
    intersect_spheres,
)
from taskbalance.data.synthetic.scenes import BOX, CONE, CYLINDER, OBJECT_CLASSES, SPHERE, Camera, SceneSpec

__all__ = ["OCCLUSION_JUMP", "render_views"]

OCCLUSION_JUMP = 0.05
SENSOR_NOISE = 0.02
_FLOOR, _WALL, _CEILING, _RUG, _PAINTING = 0, 1, 2, 3, 4


def _objects(scene: SceneSpec, o: Tensor, d: Tensor) -> tuple[Hits, Tensor]:
    return closest(
        [
            (intersect_spheres(o, d, scene.spheres), SPHERE),
            (intersect_boxes(o, d, scene.boxes), BOX),
            (intersect_cylinders(o, d, scene.cylinders), CYLINDER),
            (intersect_cones(o, d, scene.cones), CONE),
        ]
    )


def _room_classes(scene: SceneSpec, face: Tensor, point: Tensor) -> Tensor:
    room = scene.room
    classes = torch.tensor([_FLOOR, _CEILING, _WALL, _WALL, _WALL, _WALL])[face]
    cx, cz, hx, hz = room.rug.tolist()
    rug = (face == 0) & ((point[:, 0] - cx).abs() < hx) & ((point[:, 2] - cz).abs() < hz)
    classes[rug] = _RUG
    along = torch.where(face < 4, point[:, 2], point[:, 0])
    for wall, centre, up, half_w, half_h in room.paintings.tolist():
        inside = (face == 2 + int(wall)) & ((along - centre).abs() < half_w) & ((point[:, 1] - up).abs() < half_h)
        classes[inside] = _PAINTING
    return classes


def _trace(scene: SceneSpec, o: Tensor, d: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(t, world normal, class, part, surface id) of the first surface along each ray."""
    t_room, face, n_room = intersect_room(o, d, scene.room.width, scene.room.depth, scene.room.height)
    objects, kinds = _objects(scene, o, d)
    on_object = objects.t < t_room
    t = torch.where(on_object, objects.t, t_room)
    point = o + t[:, None] * d
    classes = torch.where(on_object, kinds, _room_classes(scene, face, point))
    normal = torch.where(on_object[:, None], objects.normal, n_room)
    part = torch.where(on_object, objects.part, 0)
    surface = torch.where(on_object, 100 * kinds + objects.index, face)
    return t, normal, classes, part, surface


def _albedo(classes: Tensor, point: Tensor, palette: Tensor) -> Tensor:
    """Per-class procedural texture: a pattern in [0, 1] mixing the class's two palette colours."""
    x, y, z = point.unbind(-1)
    patterns = torch.stack(
        [
            0.5 + 0.5 * torch.sin(6.0 * x + 1.5 * torch.sin(1.3 * z)),  # floor: wood grain
            0.3 + 0.15 * (torch.sin(1.7 * x + 3.1 * y) + torch.sin(2.3 * z - 1.3 * y)),  # wall: blotches
            torch.full_like(x, 0.1),  # ceiling: plain
            (torch.floor(5.0 * (x + z)) % 2),  # rug: stripes
            0.5 + 0.5 * torch.sin(9.0 * (x + z)) * torch.sin(8.0 * y),  # painting
            (torch.sin(12.0 * x) * torch.sin(12.0 * y) * torch.sin(12.0 * z) > 0.15).float(),  # sphere: dots
            ((torch.floor(4.0 * x) + torch.floor(4.0 * y) + torch.floor(4.0 * z)) % 2),  # box: checker
            (torch.sin(14.0 * (x + z)) > 0).float(),  # cylinder: vertical stripes
            (torch.sin(20.0 * y) > 0).float(),  # cone: rings
        ],
        dim=1,
    )
    mix = patterns.gather(1, classes[:, None])
    colours = palette[classes]
    return colours[:, 0] * (1 - mix) + colours[:, 1] * mix


def _shade(scene: SceneSpec, point: Tensor, normal: Tensor, albedo: Tensor) -> Tensor:
    to_light = scene.light - point
    distance = to_light.norm(dim=-1)
    direction = to_light / distance[:, None].clamp_min(1e-6)
    shadow_hits, _ = _objects(scene, point + 1e3 * EPS * normal, to_light)
    lit = (shadow_hits.t >= 1.0).float()
    diffuse = (normal * direction).sum(-1).clamp_min(0) * 2.2 / (1.0 + 0.08 * distance**2)
    return albedo * (0.3 + diffuse * lit)[:, None]


def render_views(
    scene: SceneSpec,
    cameras: list[Camera],
    resolution: tuple[int, int],
    camera_intrinsics: Tensor,
    generators: list[torch.Generator],
) -> dict[str, Tensor]:
    """Render V views; ``generators`` (one per view) drive exposure and sensor noise.

    Returns stacked tensors: image (V, 3, H, W) in [0, 1], semseg and human_parts (V, H, W) long, depth
    (V, 1, H, W) metres, normals (V, 3, H, W), sal and edge (V, 1, H, W) in {0, 1}.
    """
    height, width = resolution
    views = len(cameras)
    rotations = torch.stack([c.rotation for c in cameras])
    d = camera_rays(resolution, camera_intrinsics, rotations).reshape(-1, 3)
    o = torch.stack([c.position for c in cameras])[:, None, :].expand(views, height * width, 3).reshape(-1, 3)
    t, normal, classes, part, surface = _trace(scene, o, d)
    normal = torch.where(((normal * d).sum(-1) > 0)[:, None], -normal, normal)
    point = o + t[:, None] * d
    radiance = _shade(scene, point, normal, _albedo(classes, point, scene.palette))

    def grid(values: Tensor) -> Tensor:
        return values.reshape(views, height, width, *values.shape[1:])

    image = grid(radiance).permute(0, 3, 1, 2)
    for view, generator in enumerate(generators):
        exposure = 0.8 + 0.4 * torch.rand((), generator=generator)
        noise = SENSOR_NOISE * torch.randn(image[view].shape, generator=generator)
        image[view] = image[view] * exposure + noise
    semseg, depth = grid(classes), grid(t)
    occlusion = neighbour_mask(grid(surface), torch.ne) & neighbour_mask(
        depth, lambda a, b: (a - b).abs() > OCCLUSION_JUMP * torch.minimum(a, b)
    )
    edge = label_boundaries(semseg) | occlusion
    camera_normals = torch.einsum("vij,vnj->vni", rotations, normal.reshape(views, -1, 3))
    return {
        "image": image.clamp(0.0, 1.0).contiguous(),
        "semseg": semseg,
        "human_parts": grid(part),
        "depth": depth[:, None].float(),
        "normals": camera_normals.reshape(views, height, width, 3).permute(0, 3, 1, 2).contiguous(),
        "sal": torch.isin(semseg, torch.tensor(OBJECT_CLASSES)).float()[:, None],
        "edge": edge.float()[:, None],
    }
