"""Per-paper settings of the toy benchmark (shared/reference/methods.md §5.2) and the named loss scalings.

A preset fixes the loss scaling, the initial points, the number of Adam steps and the methods with the options the
paper's code used. Every setting can be overridden from the CLI. All presets compute in float32, as the papers' toy
code did (``torch.Tensor`` starts); ``--dtype float64`` is the option.

Clipping as in each repository's toy: the FAMO repository's ``PCGrad`` and ``CAGrad`` inherit ``max_norm = 1.0`` and
clip inside their ``backward`` (so the ``famo`` preset clips both to 1.0); its LS, MGDA and FAMO call the clipping
before ``backward``, when x has no gradient yet, so it has no effect there and they stay unclipped. Nash-MTL clips its
own update to 1.0 in every repository. The IMGrad preset's generator is Aligned-MTL's toy, whose CAGrad uses
c = 0.5 as CAGrad's own ``toy.py`` does.
"""

from __future__ import annotations

from dataclasses import dataclass

from taskbalance.toy.methods import MethodSpec, parse_methods

#: Default tolerance (distance in parameter space) for "reached the Pareto set" and "reached the optimum".
DEFAULT_TOLERANCE = 0.05
#: Default distance over the last steps of a run above which a start counts as still moving (``toy.report``).
DEFAULT_MOVING_THRESHOLD = 0.01

#: The papers' arithmetic (their toy code creates x as a float32 ``torch.Tensor``).
DEFAULT_DTYPE = "float32"
DTYPES = ("float32", "float64")

#: Named loss scalings ``(s1, s2)``: equal (CAGrad), Nash-MTL/FAMO's ``Toy(scale=0.1)``, IMGrad Fig. 2's 0.9/0.1.
SCALINGS: dict[str, tuple[float, float]] = {"equal": (1.0, 1.0), "nashmtl": (0.1, 1.0), "imgrad": (0.9, 0.1)}

#: Initial points of CAGrad's toy.py / Fig. 1 and the two extra ones of its Fig. 3 (which also has (-8.5, 7.5), (9, 9)).
CAGRAD_STARTS = ((-8.5, 7.5), (-8.5, -5.0), (9.0, 9.0), (-8.5, 5.0), (0.0, 0.0), (10.0, -8.0))
#: Initial points of the Nash-MTL toy trainer, reused by FAMO, Aligned-MTL and (through them) IMGrad Fig. 2.
NASHMTL_STARTS = ((-8.5, 7.5), (0.0, 0.0), (9.0, 9.0), (-7.5, -0.5), (9.0, -1.0))


@dataclass(frozen=True)
class Preset:
    """One paper's toy setting."""

    name: str
    source: str
    scaling: str
    starts: tuple[tuple[float, float], ...]
    steps: int
    methods: tuple[MethodSpec, ...]

    def method(self, name: str) -> MethodSpec | None:
        """This preset's spec of method ``name`` (None when it does not list it)."""
        return next((spec for spec in self.methods if spec.name == name), None)


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            name="cagrad",
            source=(
                "CAGrad (NeurIPS'21) toy.py / Fig. 1 and Fig. 3: equal losses, Adam 1e-3, 100k steps, CAGrad c = 0.5"
                " with g/(1+c)"
            ),
            scaling="equal",
            starts=CAGRAD_STARTS,
            steps=100_000,
            methods=(
                MethodSpec("uniform"),
                MethodSpec("mgda"),
                MethodSpec("pcgrad"),
                MethodSpec("cagrad", {"c": 0.5, "rescale": 2}),
            ),
        ),
        Preset(
            name="nashmtl",
            source="Nash-MTL (ICML'22) experiments/toy: l1 x 0.1, Adam 1e-3, 35k steps, CAGrad c = 0.4, Nash clip 1.0",
            scaling="nashmtl",
            starts=NASHMTL_STARTS,
            steps=35_000,
            methods=(
                MethodSpec("uniform"),
                MethodSpec("mgda"),
                MethodSpec("pcgrad"),
                MethodSpec("cagrad", {"c": 0.4}),
                MethodSpec("nashmtl", {"optim_niter": 20, "max_norm": 1.0}),
            ),
        ),
        Preset(
            name="famo",
            source=(
                "FAMO (NeurIPS'23) experiments/toy: l1 x 0.1, Adam 1e-3, 50k steps, FAMO gamma = 0; PCGrad, CAGrad and"
                " Nash-MTL clipped to 1.0 (LS, MGDA and FAMO clip before backward there: no effect)"
            ),
            scaling="nashmtl",
            starts=NASHMTL_STARTS,
            steps=50_000,
            methods=(
                MethodSpec("uniform"),
                MethodSpec("mgda"),
                MethodSpec("pcgrad", max_norm=1.0),
                MethodSpec("cagrad", {"c": 0.4}, max_norm=1.0),
                MethodSpec("nashmtl", {"optim_niter": 20, "max_norm": 1.0}),
                MethodSpec("famo", {"gamma": 0.0, "w_lr": 0.025}),
            ),
        ),
        Preset(
            name="imgrad",
            source=(
                "IMGrad (IJCAI'25) Fig. 2 with Aligned-MTL's toy generator: 0.9 L1 / 0.1 L2, Nash-MTL starts,"
                " Adam 1e-3, 35k steps, CAGrad c = 0.5"
            ),
            scaling="imgrad",
            starts=NASHMTL_STARTS,
            steps=35_000,
            methods=(
                MethodSpec("uniform"),
                MethodSpec("pcgrad"),
                MethodSpec("cagrad", {"c": 0.5}),
                MethodSpec("nashmtl", {"optim_niter": 20, "max_norm": 1.0}),
                MethodSpec("imgrad"),
            ),
        ),
    )
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; the error lists the valid ones."""
    try:
        return PRESETS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown toy preset {name!r}; available: {', '.join(PRESETS)}") from None


def parse_scaling(text: str) -> tuple[float, float]:
    """A named scaling (``equal``, ``nashmtl``, ``imgrad``) or an explicit pair ``s1,s2`` of positive numbers."""
    if text.lower() in SCALINGS:
        return SCALINGS[text.lower()]
    try:
        s1, s2 = (float(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"unknown scaling {text!r}; use one of {', '.join(SCALINGS)} or two numbers 's1,s2'") from None
    if s1 <= 0 or s2 <= 0:
        raise ValueError(f"loss scales must be positive, got {text!r}")
    return (s1, s2)



@dataclass(frozen=True)
class ToySettings:
    """Everything a toy run needs: a preset with the user's overrides applied."""

    preset: str
    scales: tuple[float, float]
    starts: tuple[tuple[float, float], ...]
    steps: int
    methods: tuple[MethodSpec, ...]
    dtype: str = DEFAULT_DTYPE


def parse_starts(text: str) -> tuple[tuple[float, float], ...]:
    """Initial points written ``x1,x2;x1,x2;...``."""
    try:
        points = tuple(tuple(float(v) for v in point.split(",")) for point in text.split(";") if point.strip())
    except ValueError:
        raise ValueError(f"starts must be 'x1,x2;x1,x2;...', got {text!r}") from None
    if not points or any(len(point) != 2 for point in points):
        raise ValueError(f"starts must be 'x1,x2;x1,x2;...', got {text!r}")
    return tuple((x1, x2) for x1, x2 in points)


def resolve_settings(
    preset: str,
    methods: str | None = None,
    steps: int | None = None,
    scaling: str | None = None,
    starts: str | None = None,
    dtype: str | None = None,
) -> ToySettings:
    """The preset's settings with overrides. Methods given by the user keep the preset's options for that method
    (e.g. ``famo`` under the ``famo`` preset still gets gamma = 0) unless the spec sets them itself."""
    chosen = get_preset(preset)
    if steps is not None and steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    specs = chosen.methods
    if methods is not None:
        specs = tuple(spec.with_defaults(chosen.method(spec.name)) for spec in parse_methods(methods))
    return ToySettings(
        preset=chosen.name,
        scales=parse_scaling(scaling if scaling is not None else chosen.scaling),
        starts=parse_starts(starts) if starts is not None else chosen.starts,
        steps=chosen.steps if steps is None else steps,
        methods=specs,
        dtype=dtype or DEFAULT_DTYPE,
    )
