"""The evaluation's metrics against independent computations: torchmetrics' calibration
error, numpy's log-softmax, per-class counts and the stated ECE definition, scipy's and
PIL's image operations for the corruptions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from zoo.engine import evaluate, resolve_precision
from zoo.metrics import ECE_BINS, EvalSums, corrupt

CPU = torch.device("cpu")


class FixedLogits(nn.Module):
    """Returns the logits stored for each input index (the input is the index)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        return self.logits[index.long()]


def _data(n: int, classes: int, seed: int, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(n, classes, generator=g)
    # A real classifier is right more often than chance: bias the true class up.
    targets = torch.randint(0, classes, (n,), generator=g)
    logits[torch.arange(n), targets] += scale * torch.rand(n, generator=g)
    return logits, targets


def _numpy_metrics(logits: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """The metrics as the module docstring defines them, in float64 numpy."""
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    prob = np.exp(logp)
    conf, pred = prob.max(axis=1), prob.argmax(axis=1)
    hit = (pred == targets).astype(float)
    bins = np.minimum((conf * ECE_BINS).astype(int), ECE_BINS - 1)
    ece = sum(abs(hit[bins == b].sum() - conf[bins == b].sum()) for b in range(ECE_BINS))
    top5 = (np.argsort(-logits, axis=1)[:, :5] == targets[:, None]).any(axis=1)
    per_class = [hit[targets == c].mean() for c in np.unique(targets)]
    return {"val_loss": -logp[np.arange(len(targets)), targets].mean(),
            "top1": 100 * hit.mean(), "top5": 100 * top5.mean(),
            "ece": 100 * ece / len(targets), "worst_class": 100 * min(per_class)}


@pytest.mark.parametrize(("n", "classes", "batch", "scale"),
                         [(300, 10, 32, 3.0), (257, 7, 50, 1.0), (64, 100, 64, 6.0)])
def test_evaluate_matches_numpy_and_torchmetrics(n: int, classes: int, batch: int,
                                                 scale: float) -> None:
    from torchmetrics.classification import MulticlassCalibrationError

    logits, targets = _data(n, classes, seed=n, scale=scale)
    loader = DataLoader(TensorDataset(torch.arange(n), targets), batch_size=batch)
    out = evaluate(FixedLogits(logits), loader, CPU, resolve_precision("fp32", CPU))
    expected = _numpy_metrics(logits.double().numpy(), targets.numpy())
    for key, value in expected.items():
        assert out[key] == pytest.approx(value, rel=1e-6, abs=1e-6), key
    assert out["count"] == n
    reference = MulticlassCalibrationError(num_classes=classes, n_bins=15, norm="l1")
    assert logits.softmax(1).amax(1).max() < 1  # torchmetrics bins 1.0 apart
    assert out["ece"] == pytest.approx(100 * float(reference(logits, targets)), abs=1e-4)


def test_ece_puts_full_confidence_in_the_last_bin() -> None:
    """Confidences of exactly 1.0 (a saturated softmax) fall in [14/15, 1]."""
    logits = torch.tensor([[100.0, 0.0], [0.0, 100.0], [0.3, 0.0], [0.0, 2.0]])
    targets = torch.tensor([0, 0, 1, 1])
    assert logits.softmax(1).amax(1)[:2].tolist() == [1.0, 1.0]
    sums = EvalSums(2, CPU)
    sums.add(logits, targets)
    expected = _numpy_metrics(logits.double().numpy(), targets.numpy())
    assert sums.metrics()["ece"] == pytest.approx(expected["ece"], rel=1e-6)


def test_shard_sums_add_up_to_the_whole_set() -> None:
    """The sums are what processes all-reduce: two shards' sums give the whole set's
    metrics, so a sharded evaluation counts each image once."""
    logits, targets = _data(200, 10, seed=3, scale=2.0)
    whole, shards = EvalSums(10, CPU), [EvalSums(10, CPU), EvalSums(10, CPU)]
    whole.add(logits, targets)
    for rank, shard in enumerate(shards):
        shard.add(logits[rank::2], targets[rank::2])
    shards[0].sums += shards[1].sums
    assert shards[0].metrics() == pytest.approx(whole.metrics(), rel=1e-6)  # float32 loss sums


def test_worst_class_skips_classes_without_images() -> None:
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [2.0, 0.0, 0.0]])
    targets = torch.tensor([0, 1, 1])  # class 2 has no image; class 1: one of two right
    sums = EvalSums(3, CPU)
    sums.add(logits, targets)
    assert sums.metrics()["worst_class"] == pytest.approx(50.0)


# --------------------------------------------------------------------------- corruptions


def _images(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8, generator=g)


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_contrast_blends_with_the_grey_mean(severity: int) -> None:
    from zoo.metrics import CORRUPTIONS

    x = _images()
    factor = CORRUPTIONS["contrast"][severity - 1]
    f = x.double().numpy() / 255
    grey = (0.2989 * f[:, 0] + 0.587 * f[:, 1] + 0.114 * f[:, 2]).mean(axis=(1, 2))
    expected = np.clip(factor * f + (1 - factor) * grey[:, None, None, None], 0, 1)
    got = corrupt(x, "contrast", severity, torch.Generator()).numpy() / 255
    assert np.abs(got - expected).max() <= 1 / 255 + 1e-9


@pytest.mark.parametrize("severity", [1, 5])
def test_blur_matches_scipy(severity: int) -> None:
    from scipy.ndimage import gaussian_filter

    from zoo.metrics import CORRUPTIONS

    x = _images(1)
    sigma = CORRUPTIONS["gaussian_blur"][severity - 1]
    radius = int(np.ceil(3 * sigma))
    # torchvision pads by reflection without repeating the edge: scipy's "mirror".
    expected = gaussian_filter(x.double().numpy() / 255, sigma=(0, 0, sigma, sigma),
                               mode="mirror", truncate=radius / sigma)
    got = corrupt(x, "gaussian_blur", severity, torch.Generator()).numpy() / 255
    assert np.abs(got - expected).max() <= 1 / 255 + 1e-6


def test_jpeg_matches_pil_at_the_same_quality() -> None:
    import io

    from PIL import Image

    from zoo.metrics import CORRUPTIONS

    x = _images(2)
    got = corrupt(x, "jpeg", 5, torch.Generator())
    for image, out in zip(x, got, strict=True):
        buf = io.BytesIO()
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(
            buf, format="JPEG", quality=int(CORRUPTIONS["jpeg"][4]))
        decoded = np.asarray(Image.open(buf).convert("RGB")).transpose(2, 0, 1)
        assert np.abs(out.numpy().astype(int) - decoded.astype(int)).max() <= 2


def test_noise_is_seeded_and_has_the_stated_sigma() -> None:
    from zoo.metrics import CORRUPTIONS

    x = torch.full((8, 3, 32, 32), 128, dtype=torch.uint8)  # far from the clip at 0 and 1
    a = corrupt(x, "gaussian_noise", 5, torch.Generator().manual_seed(7))
    b = corrupt(x, "gaussian_noise", 5, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    noise = (a.double() - 128) / 255
    sigma = CORRUPTIONS["gaussian_noise"][4]
    assert float(noise.std()) == pytest.approx(sigma, rel=0.05)
    assert abs(float(noise.mean())) < 3 * sigma / np.sqrt(noise.numel()) + 1 / 255


def test_pixelate_keeps_blocks_of_the_kept_side() -> None:
    x = _images(3)
    out = corrupt(x, "pixelate", 5, torch.Generator())  # 16 px -> 10 px -> 16 px
    # Nearest upsampling from 10 to 16 pixels: at most 10 distinct columns per row.
    assert max(len(set(map(tuple, out[i, c].T.tolist()))) for i in range(3)
               for c in range(3)) <= 10
    assert not torch.equal(out, x)


def test_eval_corruptions_off_keeps_the_hashes_of_runs_made_before() -> None:
    """``eval.corruptions: false`` leaves the run's identity as it was before the section
    existed; switching it on is another run (it measures more)."""
    from zoo.config import run_identity
    from zoo.validate import build_config

    plain = build_config({"model": "resnet20"})
    identity = run_identity(plain.to_dict())
    assert "eval" not in identity and identity == run_identity(
        {k: v for k, v in plain.to_dict().items() if k != "eval"})
    on = build_config({"model": "resnet20", "eval": {"corruptions": True}})
    assert run_identity(on.to_dict())["eval"] == {"corruptions": True}
    assert on.identity() != plain.identity()


@pytest.mark.parametrize("decode", ["gpu", "auto"])
def test_eval_corruptions_need_cpu_decoding_and_say_so_before_training(decode: str) -> None:
    from zoo.errors import ConfigError
    from zoo.validate import build_config

    with pytest.raises(ConfigError, match=r"eval\.corruptions: needs data\.decode: cpu"):
        build_config({"data": {"decode": decode}, "eval": {"corruptions": True}})
    assert build_config({"eval": {"corruptions": True}}).eval.corruptions
