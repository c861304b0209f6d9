"""Explicit registration (``@register_balancer``), the import layers of ``balancers/``, the last shared layer,
and the API details of issue 11 (item 13): typed empty ``grad_norms``, ``source=`` refused for loss-only methods."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
import sys
from pathlib import Path
from typing import ClassVar

import pytest
import timm
import torch
from torch import nn

import taskbalance.balancers as package
from taskbalance.balancers import (
    Aggregation,
    Balancer,
    BalancerError,
    StepInputs,
    available,
    create,
    get,
    register_balancer,
)
from taskbalance.balancers.registry import INFRASTRUCTURE, method_modules

PACKAGE_DIR = Path(package.__file__).parent
TASKS = ("a", "b")


class Probe(Balancer):
    name: ClassVar[str] = "probe-not-registered"
    description: ClassVar[str] = "a Balancer subclass that nobody registered"

    def aggregate(self, inputs: StepInputs) -> Aggregation:
        return Aggregation(weights=torch.ones(self.num_tasks, dtype=torch.float64))


METHOD_MODULES = method_modules()


def test_the_method_modules_are_found_without_a_list() -> None:
    """Every module of the package is scanned except the infrastructure, and the methods come exactly from the
    scanned modules that decorate a class with @register_balancer (the rule that makes a module a method)."""
    files = {path.stem for path in PACKAGE_DIR.glob("*.py")} - {"__init__"}
    assert set(METHOD_MODULES) == files - INFRASTRUCTURE
    registering = {m for m in METHOD_MODULES if "@register_balancer" in (PACKAGE_DIR / f"{m}.py").read_text()}
    assert {"uniform", "avgnorm", "mgda", "famo", "nashmtl"} <= registering
    assert {get(name).__module__.rsplit(".", 1)[1] for name in available()} == registering


def test_only_decorated_classes_of_the_package_are_methods() -> None:
    methods = {get(name) for name in available()}
    # importing every other module of the package (engine, solvers, a runner's helper, ...) registers nothing
    for info in pkgutil.iter_modules([str(PACKAGE_DIR)]):
        importlib.import_module(f"{package.__name__}.{info.name}")
    assert {get(name) for name in available()} == methods
    assert Probe.name not in available()


def test_a_helper_module_dropped_into_the_package_is_never_a_method(tmp_path: Path) -> None:
    helper = tmp_path / "my_helper.py"
    helper.write_text(
        "from taskbalance.balancers.base import Balancer\n"
        "class Helper(Balancer):\n"
        "    name = 'helper-method'\n"
        "    description = 'looks like a method'\n"
    )
    name = f"{package.__name__}.my_helper"
    spec = importlib.util.spec_from_file_location(name, helper)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        assert issubclass(module.Helper, Balancer)
        assert "helper-method" not in available()
        with pytest.raises(BalancerError, match="unknown balancer"):
            create("helper-method", tasks=TASKS)
    finally:
        del sys.modules[name]


def test_register_balancer_refuses_bad_classes() -> None:
    with pytest.raises(TypeError, match="Balancer subclass"):
        register_balancer(int)  # type: ignore[type-var]

    class Nameless(Probe):
        name = ""

    with pytest.raises(TypeError, match="name and description"):
        register_balancer(Nameless)

    class Clash(Probe):
        name = "uniform"

    with pytest.raises(TypeError, match="two balancers are named 'uniform'"):
        register_balancer(Clash)
    assert get("uniform") is not Clash


def _package_imports(path: Path) -> set[str]:
    """Modules of ``taskbalance.balancers`` that ``path`` imports anywhere (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom):  # ``from . import x`` / ``from .x import y`` are imports of the package
            module = ".".join(filter(None, [package.__name__ if node.level == 1 else "", node.module or ""]))
            names = [module, *(f"{module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        found |= {n.split(".")[2] for n in names if n.startswith("taskbalance.balancers.") and n.count(".") >= 2}
    return found & {info.name for info in pkgutil.iter_modules([str(PACKAGE_DIR)])}


#: What each module below the methods may import from the package (exactly: a new import is a decision).
LAYERS: dict[str, set[str]] = {
    "types": set(),
    "gramian": {"types"},
    "capture": set(),
    "checks": {"types"},
    "graph": {"types"},
    "gradients": {"types", "gramian"},
    "writeback": {"types", "gradients", "graph"},
    "engine": {"types", "gramian", "capture", "checks", "graph", "gradients", "writeback"},
    "base": {"types", "engine", "capture", "checks"},
    "registry": {"base"},
    "solvers": set(),
    "helpers": {"types", "checks"},
    "driver": {"types", "base"},
}


def test_layers_import_in_one_direction() -> None:
    assert set(LAYERS) == INFRASTRUCTURE
    for module, allowed in LAYERS.items():
        assert _package_imports(PACKAGE_DIR / f"{module}.py") == allowed, module


def registered_method_modules() -> set[str]:
    """The modules of the package that register a method (``get(name).__module__``), by short name."""
    modules = {get(name).__module__ for name in available()}
    return {m.rsplit(".", 1)[1] for m in modules if m.startswith(f"{package.__name__}.")}


def test_no_method_module_imports_another() -> None:
    """A helper two methods share lives in ``solvers`` or ``helpers``, never in one of the methods."""
    methods = registered_method_modules()
    assert {"cagrad", "imgrad", "pcgrad", "gradvac", "static", "famo"} <= methods
    for module in sorted(methods):
        imports = _package_imports(PACKAGE_DIR / f"{module}.py")
        assert not imports & methods, f"{module} imports the method module(s) {sorted(imports & methods)}"
        assert imports <= INFRASTRUCTURE - {"driver"}, module  # methods sit on top; the driver sits above them


def test_the_import_check_sees_an_import_of_a_method_module(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from taskbalance.balancers.cagrad import cagrad_weights\n"
                      "import taskbalance.balancers.pcgrad\nfrom taskbalance.balancers import static, types\n"
                      "from .famo import FAMO\nfrom . import gradvac\n")
    assert _package_imports(source) == {"cagrad", "pcgrad", "static", "types", "famo", "gradvac"}


# ----------------------------------------------------------------------------- the last shared layer (issue 11.4)
def resnet18_encoder() -> nn.Module:
    return timm.create_model("resnet18", pretrained=False, features_only=True)


def test_last_layer_of_a_timm_resnet18_is_its_last_convolution_not_a_batchnorm() -> None:
    encoder = resnet18_encoder()
    balancer = create("avgnorm", tasks=TASKS, shared=encoder)
    assert balancer.last_layer_name == "layer4.1.conv2"
    conv = encoder.get_submodule("layer4.1.conv2")
    assert [id(p) for p in balancer.last_layer_params] == [id(conv.weight)]  # 512·512·3·3, no bias
    with_parameters = [n for n, m in encoder.named_modules() if any(True for _ in m.parameters(recurse=False))]
    assert with_parameters[-1] == "layer4.1.bn2"  # what "the last module with parameters" used to pick


def test_last_layer_named_by_path_module_or_tensors() -> None:
    encoder = resnet18_encoder()
    named = create("gradnorm", tasks=TASKS, shared=encoder, last_layer="layer3.1.conv1")
    assert named.last_layer_name == "layer3.1.conv1"
    assert named.last_layer_params[0] is encoder.get_submodule("layer3.1.conv1").weight
    module = encoder.get_submodule("layer2.0.conv2")
    assert create("avgnorm", tasks=TASKS, shared=encoder, last_layer=module).last_layer_name == "layer2.0.conv2"
    as_list = create("avgnorm", tasks=TASKS, shared=list(encoder.parameters()), last_layer=module)
    assert as_list.last_layer_name == "Conv2d (weight 128×128×3×3)"
    with pytest.raises(BalancerError, match="not a module of the shared encoder"):
        create("avgnorm", tasks=TASKS, shared=encoder, last_layer="layer9.conv")
    with pytest.raises(BalancerError, match="shared must be a module"):
        create("avgnorm", tasks=TASKS, shared=list(encoder.parameters()), last_layer="layer4.1.conv2")


def test_a_shared_module_without_weight_layers_needs_a_named_last_layer() -> None:
    with pytest.raises(BalancerError, match="last_layer="):
        create("avgnorm", tasks=TASKS, shared=nn.Sequential(nn.BatchNorm1d(3)))


# ----------------------------------------------------------------------------- API details (issue 11.13)
class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Sequential(nn.Linear(3, 4), nn.Tanh())
        self.heads = nn.ModuleList(nn.Linear(4, 1) for _ in TASKS)

    def losses(self) -> dict[str, torch.Tensor]:
        z = self.encoder(torch.ones(2, 3))
        return {t: head(z).pow(2).mean() for t, head in zip(TASKS, self.heads)}


def test_grad_norms_is_an_empty_mapping_without_gradients_and_filled_with_them() -> None:
    model = Tiny()
    balancer = create("dwa", tasks=TASKS, shared=model.encoder)
    step = balancer.backward(model.losses())
    assert step.grad_norms == {} and step.gramian is None
    diagnosed = balancer.backward(model.losses(), diagnose="params")
    assert set(diagnosed.grad_norms) == set(TASKS)
    assert diagnosed.grad_norms["a"] == pytest.approx(float(diagnosed.gramian[0, 0]) ** 0.5)  # type: ignore[index]


@pytest.mark.parametrize(("method", "options"), [("uniform", {}), ("famo", {}), ("imtl", {"variant": "l"})])
def test_a_source_for_a_method_without_gradients_is_refused(method: str, options: dict[str, str]) -> None:
    model = Tiny()
    with pytest.raises(BalancerError, match="diagnose="):
        create(method, tasks=TASKS, shared=model.encoder, source="params", **options)
    balancer = create(method, tasks=TASKS, shared=model.encoder, **options)
    with pytest.raises(BalancerError, match="diagnose="):
        balancer.backward(model.losses(), source="features")
    assert all(p.grad is None for p in model.parameters())


def test_a_source_for_a_gradient_method_is_kept() -> None:
    model = Tiny()
    assert create("imtl", tasks=TASKS, shared=model.encoder, source="features").source == "features"
    assert create("mgda", tasks=TASKS, shared=model.encoder, source="last_layer").source == "last_layer"
