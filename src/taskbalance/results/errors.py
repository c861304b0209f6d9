"""The error of the results package."""


class ResultsError(ValueError):
    """Results that cannot be read, compared or tabulated (missing task, mismatched metric, bad file, ...)."""
