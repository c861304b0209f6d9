"""Figures of training runs: the gradient-diagnostics curves (paper Figs. 6-16) and the study's figures."""

from taskbalance.plots.diagnostics import FIGURES, plot_quantity, plot_runs

__all__ = ["FIGURES", "plot_quantity", "plot_runs"]
