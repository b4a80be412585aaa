"""Model cost figures: parameters, GFLOPs at an input size, weights on disk."""

import torch

from vitrine.evaluate.cost import gflops, model_cost, parameter_count, weights_bytes


def _net():
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1, bias=False), torch.nn.Flatten(), torch.nn.Linear(8 * 16 * 16, 4)
    )


def test_parameters_and_flops_match_a_hand_count():
    net = _net()
    assert parameter_count(net) == 3 * 8 * 9 + (8 * 16 * 16) * 4 + 4
    # conv: 2 * (16*16 outputs * 8 channels) * (3*9 inputs); linear: 2 * 2048 * 4 (bias adds are not counted)
    expected = (2 * 16 * 16 * 8 * 27 + 2 * 2048 * 4) / 1e9
    assert abs(gflops(net, torch.zeros(1, 3, 16, 16)) - expected) < 1e-12
    assert abs(gflops(net, torch.zeros(2, 3, 16, 16)) - 2 * expected) < 1e-12  # per batch, not per image


def test_flops_grow_with_the_input_and_keep_the_mode():
    conv = torch.nn.Conv2d(3, 4, 3).train()
    small, large = gflops(conv, torch.zeros(1, 3, 32, 32)), gflops(conv, torch.zeros(1, 3, 64, 64))
    assert large > 3.5 * small and conv.training  # restored after the eval-mode pass


def test_a_pass_that_fails_gives_none_and_sizes_on_disk(tmp_path):
    assert gflops(_net(), torch.zeros(1, 3, 8, 8)) is None  # wrong input shape: logged, not raised
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "a.bin").write_bytes(b"x" * 10)
    (tmp_path / "w" / "b.bin").write_bytes(b"x" * 5)
    assert weights_bytes(tmp_path / "w") == 15 and weights_bytes(tmp_path / "w" / "a.bin") == 10
    assert weights_bytes(tmp_path / "missing") is None and weights_bytes(None) is None
    cost = model_cost(_net(), weights=tmp_path / "w")
    assert cost["gflops"] is None and cost["weights_bytes"] == 15 and cost["parameters"] > 0
