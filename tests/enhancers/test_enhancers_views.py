import pytest
import torch

from llmseqrec.enhancers.views import (
    crop_lowest,
    keep_positions,
    random_crop,
    random_mask,
    random_reorder,
    represent_by_length,
    substitute,
)
from llmseqrec.models.registry import build_backbone

ROWS = torch.tensor([[0, 0, 5, 6, 7, 8], [1, 2, 3, 4, 5, 6], [0, 0, 0, 0, 0, 9]])


def is_subsequence(view: list[int], row: list[int]) -> bool:
    it = iter(row)
    return all(item in it for item in view)


def real(row: torch.Tensor) -> list[int]:
    return [int(x) for x in row if x > 0]


def test_keep_positions_left_pads_and_keeps_order():
    keep = torch.tensor(
        [[1, 1, 0, 1, 0, 1], [1, 0, 1, 0, 1, 0], [0, 0, 0, 0, 0, 1]], dtype=torch.bool
    )
    out = keep_positions(ROWS, keep)
    assert out.tolist() == [[0, 0, 0, 0, 6, 8], [0, 0, 0, 1, 3, 5], [0, 0, 0, 0, 0, 9]]


def test_crop_lowest_drops_the_lowest_scores():
    scores = torch.tensor(
        [[9.0, 9.0, 0.3, 0.1, 0.2, 0.9], [6, 5, 4, 3, 2, 1.0], [0, 0, 0, 0, 0, 1.0]]
    )
    out = crop_lowest(ROWS, scores, torch.tensor([2, 3, 0]))
    assert out.tolist() == [[0, 0, 0, 0, 5, 8], [0, 0, 0, 1, 2, 3], [0, 0, 0, 0, 0, 9]]
    # Negated scores drop the highest instead.
    out = crop_lowest(ROWS, -scores, torch.tensor([2, 3, 0]))
    assert out.tolist() == [[0, 0, 0, 0, 6, 7], [0, 0, 0, 4, 5, 6], [0, 0, 0, 0, 0, 9]]


def test_random_views_keep_shape_order_and_items():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        crop = random_crop(ROWS, 0.6, g)
        assert crop.shape == ROWS.shape
        for view, row in zip(crop, ROWS, strict=True):
            assert 1 <= len(real(view)) <= len(real(row))
            assert is_subsequence(real(view), real(row))
            joined = " ".join(map(str, real(row)))
            assert " ".join(map(str, real(view))) in joined  # contiguous
        masked = random_mask(ROWS, 0.5, 99, g)
        assert ((masked == ROWS) | (masked == 99)).all() and ((ROWS == 0) == (masked == 0)).all()
        reordered = random_reorder(ROWS, 0.5, g)
        for view, row in zip(reordered, ROWS, strict=True):
            assert sorted(real(view)) == sorted(real(row)) and (view == 0).sum() == (row == 0).sum()


def test_substitute_uses_only_neighbours():
    g = torch.Generator().manual_seed(1)
    neighbours = torch.zeros(10, 2, dtype=torch.long)
    for item in range(1, 10):
        neighbours[item] = torch.tensor([(item % 9) + 1, 0])
    out = substitute(ROWS, 1.0, neighbours, g)
    assert out.shape == ROWS.shape
    for a, b in zip(out.flatten().tolist(), ROWS.flatten().tolist(), strict=True):
        assert a == b or a == neighbours[b, 0]


@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "lrurec", "narm", "fmlprec", "hstu"])
def test_represent_by_length_equals_the_padded_batch(name):
    torch.manual_seed(0)
    backbone = build_backbone(name, 30, {"max_len": 12}).eval()
    lengths = torch.tensor([1, 12, 3, 7, 2, 9, 5, 4, 11])
    rows = torch.zeros(len(lengths), 12, dtype=torch.long)
    for i, n in enumerate(lengths.tolist()):
        rows[i, 12 - n :] = torch.randint(1, 31, (n,))
    with torch.no_grad():
        full = backbone.encode(rows)[:, -1]
        grouped = represent_by_length(lambda part: backbone.encode(part)[:, -1], rows, groups=3)
    assert torch.allclose(full, grouped, atol=1e-5)
