"""Test-wide settings: one intra-op thread per pytest worker (the suite runs with -n 2 on 2 cores)."""

import matplotlib
import torch

matplotlib.use("Agg")
torch.set_num_threads(1)
