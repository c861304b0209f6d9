"""The models, data and tasks registries: one style, explicit registration, names in a fixed order."""

from __future__ import annotations

import pytest

from taskbalance.balancers import BalancerError, get
from taskbalance.balancers import registry as balancer_registry
from taskbalance.conventions import TASK_NAMES
from taskbalance.data import available_datasets
from taskbalance.data.registry import DATASETS
from taskbalance.models import ModelError, available_architectures
from taskbalance.models.backbones import BACKBONES, backbone_spec
from taskbalance.models.registry import ARCHITECTURES, register_architecture
from taskbalance.registration import Registry
from taskbalance.tasks import available_tasks
from taskbalance.tasks.registry import TASKS


def test_registration_is_explicit_and_refuses_a_duplicate_name():
    things: Registry[int] = Registry("thing")

    @things.register("seven")
    def seven() -> int:
        return 7

    assert list(things) == ["seven"] and things["seven"]() == 7
    with pytest.raises(TypeError, match="two things are named 'seven'"):
        things.add("seven", lambda: 8)
    with pytest.raises(TypeError, match="needs a non-empty name"):
        things.add("", lambda: 0)
    assert things["seven"] is seven  # the decorator returns the object unchanged


def test_every_package_registry_is_a_registry_in_its_listing_order():
    assert all(
        isinstance(r, Registry) for r in (ARCHITECTURES, BACKBONES, DATASETS, TASKS, balancer_registry._REGISTRY)
    )
    assert available_tasks() == TASK_NAMES == tuple(TASKS)
    assert available_datasets() == ("synthetic", "nyud", "pascal", "replica")
    assert available_architectures() == ["vanilla", "mtan", "mtinet", "invpt"]


def test_registering_an_existing_architecture_again_is_an_error():
    with pytest.raises(TypeError, match="two architectures are named 'mtan'"):
        register_architecture(ARCHITECTURES["mtan"])


def test_an_unknown_name_raises_the_registrys_error_listing_the_names():
    letters: Registry[int] = Registry("letter", KeyError)
    letters.add("a", 1)
    letters.add("b", 2)
    assert letters.lookup("b") == 2
    with pytest.raises(KeyError, match="unknown letter 'c'; available: a, b"):
        letters.lookup("c")
    with pytest.raises(ModelError, match="unknown backbone 'resnet7'; available: tiny, resnet18, "):
        backbone_spec("resnet7")
    with pytest.raises(BalancerError, match="unknown balancer 'no-such'; available: .*avgnorm"):
        get("no-such")


def test_a_class_defined_again_replaces_itself_and_another_one_is_refused():
    classes: Registry[type] = Registry("widget")

    def define() -> type:
        class Same:
            pass
        return Same

    first, again = define(), define()  # one definition run twice: the same module and qualified name
    classes.add("same", first)
    assert classes.add("same", again) is again and classes["same"] is again

    class Other:
        pass

    with pytest.raises(TypeError, match=r"two widgets are named 'same': .*define.<locals>.Same and .*Other"):
        classes.add("same", Other)
    copy = classes.copy()
    assert isinstance(copy, Registry) and copy.kind == "widget" and dict(copy) == dict(classes) and copy is not classes
