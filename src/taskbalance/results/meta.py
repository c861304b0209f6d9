"""The typed ``meta`` of a ``results.json``: what a run records about itself beside its metrics.

:class:`RunMeta` is what the trainer writes (every field set) and what readers parse any run's ``meta`` with: every
field is optional there, because composed baselines, protocol runs and imported CSV rows record fewer, and keys it
does not name are kept. :class:`ProtocolMeta` is what the protocol runner writes.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from taskbalance.results.schema import RunResult


class _Meta(BaseModel):
    model_config = ConfigDict(extra="allow")

    def dump(self) -> dict[str, Any]:
        """The JSON-ready ``meta`` dict (the fields that were set, in field order, then any extra keys)."""
        return self.model_dump(exclude_unset=True)


class RunMeta(_Meta):
    """A trained run's provenance: training length, selected step, time, method options, model, data, seed, thread
    count, torch version, the hashes of its config (``config_sha256``) and of its arm (``arm_sha256``: the config
    without seed, name, thread count and execution settings) and the imbalance summary of its diagnostics."""

    steps: int | None = None
    best_step: int | None = None
    train_seconds: float | None = None
    method_options: dict[str, Any] | None = None
    arch: str | None = None
    backbone: str | None = None
    dataset: str | None = None
    dataset_info: dict[str, Any] | None = None
    seed: int | str | None = None
    threads: int | None = None
    torch: str | None = None
    config_sha256: str | None = None
    arm_sha256: str | None = None
    imbalance: dict[str, Any] | None = None

    @classmethod
    def of(cls, run: RunResult) -> RunMeta:
        """Parse ``run.meta``."""
        return cls.model_validate(run.meta)

    def recorded(self, keys: tuple[str, ...]) -> dict[str, Any]:
        """The entries of ``keys`` the run recorded (a key written as null included), in the order of ``keys``."""
        present = self.model_fields_set | set(self.model_extra or {})
        return {key: getattr(self, key) for key in keys if key in present}


class ProtocolMeta(_Meta):
    """A protocol run's provenance: the benchmark preset, method options, seed, epochs, the protocol's Δm and the
    dataset's metadata."""

    protocol: str
    method_options: dict[str, Any]
    seed: int
    epochs: int
    delta_m_protocol: float | None
    dataset_info: dict[str, Any]
