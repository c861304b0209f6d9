"""Procedural rooms: the class and part tables and the random scene and camera descriptions.

World frame: metres, y up, the floor is ``y = 0``; a room is the box ``[-w/2, w/2] × [0, h] × [-d/2, d/2]``.
Everything is drawn from a :class:`torch.Generator`, so a scene is a pure function of its seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "CLASSES",
    "OBJECT_CLASSES",
    "PARTS",
    "Camera",
    "Room",
    "SceneSpec",
    "look_at",
    "sample_camera",
    "sample_scene",
]

#: Semantic classes (ids are positions). Surfaces first, then the four object kinds.
CLASSES: tuple[str, ...] = ("floor", "wall", "ceiling", "rug", "painting", "sphere", "box", "cylinder", "cone")
#: Class ids that count as foreground objects (saliency).
OBJECT_CLASSES: tuple[int, ...] = (5, 6, 7, 8)
#: Object parts (ids are positions; 0 is everything that is not an object).
PARTS: tuple[str, ...] = ("background", "box top", "box side", "sphere upper", "sphere lower", "cap", "lateral")

SPHERE, BOX, CYLINDER, CONE = OBJECT_CLASSES


@dataclass(frozen=True)
class Room:
    """Room extent and its flat decals.

    ``rug``: (4,) centre x, centre z, half size x, half size z on the floor. ``paintings``: (P, 5) wall index
    (0: x = -w/2, 1: x = +w/2, 2: z = -d/2, 3: z = +d/2), centre along the wall, centre height, half width,
    half height.
    """

    width: float
    depth: float
    height: float
    rug: Tensor
    paintings: Tensor


@dataclass(frozen=True)
class SceneSpec:
    """A scene: room, objects per kind, light and colours.

    Objects rest on the floor. ``spheres`` (N, 4): x, y, z, radius. ``boxes`` (N, 7): centre x, y, z, half
    sizes x, y, z, yaw. ``cylinders`` and ``cones`` (N, 5): base centre x, base y, base centre z, radius,
    height. ``palette`` (C, 2, 3): the two colours each class's texture mixes.
    """

    room: Room
    spheres: Tensor
    boxes: Tensor
    cylinders: Tensor
    cones: Tensor
    light: Tensor
    palette: Tensor

    @property
    def footprints(self) -> Tensor:
        """(N, 3) floor discs (x, z, radius) covering every object."""
        discs = [
            self.spheres[:, [0, 2, 3]],
            torch.stack([self.boxes[:, 0], self.boxes[:, 2], self.boxes[:, 3].hypot(self.boxes[:, 5])], 1),
            self.cylinders[:, [0, 2, 3]],
            self.cones[:, [0, 2, 3]],
        ]
        return torch.cat(discs)


@dataclass(frozen=True)
class Camera:
    """A pinhole camera pose: ``position`` (3,) and ``rotation`` (3, 3) world→camera (rows: right, down, forward)."""

    position: Tensor
    rotation: Tensor


# Base colour of each class (RGB in [0, 1]); every scene jitters them.
_BASE_COLOURS = torch.tensor(
    [
        [0.55, 0.38, 0.22],  # floor: wood
        [0.80, 0.78, 0.72],  # wall
        [0.92, 0.92, 0.90],  # ceiling
        [0.60, 0.15, 0.18],  # rug
        [0.20, 0.35, 0.65],  # painting
        [0.85, 0.55, 0.10],  # sphere
        [0.25, 0.55, 0.30],  # box
        [0.35, 0.30, 0.70],  # cylinder
        [0.75, 0.25, 0.55],  # cone
    ]
)


def _uniform(generator: torch.Generator, low: float, high: float, *shape: int) -> Tensor:
    return low + (high - low) * torch.rand(shape or (), generator=generator, dtype=torch.float64)


def _palette(generator: torch.Generator) -> Tensor:
    base = (_BASE_COLOURS.double() + _uniform(generator, -0.08, 0.08, len(CLASSES), 3)).clamp(0.05, 0.95)
    second = (base * _uniform(generator, 0.45, 0.8, len(CLASSES), 1) + _uniform(generator, -0.1, 0.1, len(CLASSES), 3))
    return torch.stack([base, second.clamp(0.02, 0.98)], dim=1).float()


def _room(generator: torch.Generator) -> Room:
    width, depth, height = (
        float(v) for v in (_uniform(generator, 4.0, 7.0), _uniform(generator, 4.0, 7.0), _uniform(generator, 2.5, 3.2))
    )
    rug = torch.stack(
        [
            _uniform(generator, -width / 4, width / 4),
            _uniform(generator, -depth / 4, depth / 4),
            _uniform(generator, 0.5, width / 4),
            _uniform(generator, 0.5, depth / 4),
        ]
    )
    count = int(torch.randint(1, 4, (), generator=generator))
    walls = torch.randint(0, 4, (count,), generator=generator).double()
    half_len = torch.where(walls < 2, torch.full_like(walls, depth / 2), torch.full_like(walls, width / 2))
    half_w = _uniform(generator, 0.3, 0.8, count)
    half_h = _uniform(generator, 0.25, 0.5, count)
    along = (2 * torch.rand(count, generator=generator, dtype=torch.float64) - 1) * (half_len - half_w - 0.1)
    up = _uniform(generator, 1.3, height - 0.7, count)
    paintings = torch.stack([walls, along, up, half_w, half_h], dim=1)
    return Room(width, depth, height, rug.float(), paintings.float())


def sample_scene(generator: torch.Generator, max_objects: int = 7) -> SceneSpec:
    """A random room with 3 to ``max_objects`` non-overlapping objects standing on the floor."""
    room = _room(generator)
    target = int(torch.randint(3, max_objects + 1, (), generator=generator))
    placed: list[tuple[float, float, float]] = []
    kinds: dict[int, list[list[float]]] = {kind: [] for kind in OBJECT_CLASSES}
    for _ in range(40 * target):
        if len(placed) == target:
            break
        kind = OBJECT_CLASSES[int(torch.randint(0, 4, (), generator=generator))]
        if kind == SPHERE:
            radius = float(_uniform(generator, 0.25, 0.6))
            params, reach = [0.0, radius, 0.0, radius], radius
        elif kind == BOX:
            hx, hy, hz = (float(v) for v in _uniform(generator, 0.2, 0.6, 3))
            params, reach = [0.0, hy, 0.0, hx, hy, hz, float(_uniform(generator, 0.0, math.pi))], math.hypot(hx, hz)
        else:
            radius = float(_uniform(generator, 0.15, 0.45) if kind == CYLINDER else _uniform(generator, 0.2, 0.5))
            params, reach = [0.0, 0.0, 0.0, radius, float(_uniform(generator, 0.4, 1.6))], radius
        x = float(_uniform(generator, -room.width / 2 + reach + 0.3, room.width / 2 - reach - 0.3))
        z = float(_uniform(generator, -room.depth / 2 + reach + 0.3, room.depth / 2 - reach - 0.3))
        if all(math.hypot(x - px, z - pz) > reach + pr + 0.1 for px, pz, pr in placed):
            params[0], params[2] = x, z
            kinds[kind].append(params)
            placed.append((x, z, reach))
    widths = {SPHERE: 4, BOX: 7, CYLINDER: 5, CONE: 5}
    tensors = {
        kind: torch.tensor(kinds[kind], dtype=torch.float32).reshape(-1, widths[kind]) for kind in OBJECT_CLASSES
    }
    light = torch.stack(
        [
            _uniform(generator, -room.width / 3, room.width / 3),
            torch.tensor(room.height - 0.2, dtype=torch.float64),
            _uniform(generator, -room.depth / 3, room.depth / 3),
        ]
    ).float()
    return SceneSpec(room, tensors[SPHERE], tensors[BOX], tensors[CYLINDER], tensors[CONE], light, _palette(generator))


def look_at(position: Tensor, target: Tensor) -> Tensor:
    """World→camera rotation (rows: right, down, forward) of a camera at ``position`` looking at ``target``."""
    forward = target - position
    forward = forward / forward.norm()
    right = torch.linalg.cross(forward, torch.tensor([0.0, 1.0, 0.0]))
    right = right / right.norm()
    down = torch.linalg.cross(forward, right)
    return torch.stack([right, down, forward])


def sample_camera(scene: SceneSpec, generator: torch.Generator) -> Camera:
    """A camera at standing height inside the room, away from walls and objects, looking at an object."""
    room, discs = scene.room, scene.footprints
    for _ in range(200):
        x = float(_uniform(generator, -room.width / 2 + 0.4, room.width / 2 - 0.4))
        z = float(_uniform(generator, -room.depth / 2 + 0.4, room.depth / 2 - 0.4))
        clearance = torch.hypot(discs[:, 0] - x, discs[:, 1] - z) - discs[:, 2]
        if len(discs) and float(clearance.min()) < 0.5:
            continue
        position = torch.tensor([x, float(_uniform(generator, 1.0, 1.8)), z])
        pick = int(torch.randint(0, len(discs), (), generator=generator))
        target = torch.tensor(
            [float(discs[pick, 0]), float(_uniform(generator, 0.1, 0.8)), float(discs[pick, 1])]
        ) + 0.3 * (2 * torch.rand(3, generator=generator) - 1)
        if float((target - position)[[0, 2]].norm()) > 1.0:
            return Camera(position, look_at(position, target))
    raise RuntimeError("could not place a camera in this scene (objects fill the room); use another seed")
