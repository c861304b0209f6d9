"""The models, data and tasks registries: one style, explicit registration, names in a fixed order."""

from __future__ import annotations

import pytest

from taskbalance.conventions import TASK_NAMES
from taskbalance.data import available_datasets
from taskbalance.data.registry import DATASETS
from taskbalance.models import available_architectures
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
    assert all(isinstance(r, Registry) for r in (ARCHITECTURES, DATASETS, TASKS))
    assert available_tasks() == TASK_NAMES == tuple(TASKS)
    assert available_datasets() == ("synthetic", "nyud", "pascal", "replica")
    assert available_architectures() == ["vanilla", "mtan", "mtinet", "invpt"]


def test_registering_an_existing_architecture_again_is_an_error():
    with pytest.raises(TypeError, match="two architectures are named 'mtan'"):
        register_architecture(ARCHITECTURES["mtan"])
