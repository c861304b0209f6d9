"""Figures of training runs: the gradient-diagnostics curves (paper Figs. 6-16) and the study's figures.

May import: ``results``, ``records``, ``conventions`` and ``atomic``; never training or the study.
"""

from taskbalance.plots.diagnostics import FIGURES, find_runs, plot_quantity, plot_runs, quantity_figure

__all__ = ["FIGURES", "find_runs", "plot_quantity", "plot_runs", "quantity_figure"]
