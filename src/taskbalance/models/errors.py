"""The error of the models package, below every other module of it (the backbones' registry raises it too)."""


class ModelError(ValueError):
    """A user mistake in how a model is built or called (bad name, option, task or input)."""
