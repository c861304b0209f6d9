"""PASCAL-Context edge labels (dense_prediction.md §1.2): cv2 Laplacian of the LabelMap, then skimage thinning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from taskbalance.data.edges import context_edges, thin


def test_two_regions_give_a_one_pixel_line_on_the_boundary():
    label_map = torch.full((6, 6), 3)
    label_map[:, 3:] = 7  # Laplacian ±4 on columns 2 and 3: a two-pixel band, thinned to column 2
    expected = torch.zeros(6, 6)
    expected[1:, 2] = 1.0  # the band's top-right corner pixels go in the first subiteration
    edges = context_edges(label_map)
    assert edges.dtype == torch.float32 and edges.shape == (6, 6)
    assert torch.equal(edges, expected)


def test_constant_map_has_no_edge():
    assert torch.equal(context_edges(torch.full((4, 5), 12)), torch.zeros(4, 5))


def test_edges_follow_the_laplacian_of_label_values():
    # columns 1, 2, 3: the middle pixel's neighbours sum to 4·2, so its Laplacian is 0 despite the boundaries
    edges = context_edges(torch.tensor([[1, 2, 3]] * 4))
    assert torch.equal(edges, torch.tensor([[1.0, 0.0, 1.0]] * 4))
    assert set(edges.unique().tolist()) <= {0.0, 1.0}


def test_thin_matches_the_skimage_docstring_example():
    square = np.zeros((7, 7), dtype=bool)
    square[1:-1, 2:-2] = True
    square[0, 1] = True
    expected = np.zeros((7, 7), dtype=bool)
    expected[0, 1] = expected[1, 2] = True
    expected[2:5, 3] = True
    assert np.array_equal(thin(square), expected)


def test_label_map_must_be_two_dimensional():
    with pytest.raises(ValueError, match="H×W"):
        context_edges(torch.zeros(1, 4, 4, dtype=torch.long))
