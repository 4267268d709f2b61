"""Tricks against independent reference computations, and the trick registry's checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from zoo.errors import ConfigError, UnknownNameError
from zoo.tricks import TrickSet, get_trick, list_tricks, validate_tricks


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3, 0.9])
def test_label_smoothing_loss_equals_the_formula(eps: float) -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(16, 5, generator=g)
    targets = torch.randint(0, 5, (16,), generator=g)
    criterion = nn.CrossEntropyLoss(**TrickSet({"label_smoothing": {"smoothing": eps}})
                                    .loss_kwargs())
    logp = torch.log_softmax(logits, 1)
    q = torch.full_like(logp, eps / 5)
    q[torch.arange(16), targets] += 1 - eps
    assert criterion(logits, targets).item() == pytest.approx(-(q * logp).sum(1).mean().item(),
                                                              rel=1e-6)


def test_label_smoothing_smooths_soft_targets_too() -> None:
    logits = torch.randn(4, 3)
    soft = torch.softmax(torch.randn(4, 3), 1)
    eps = 0.2
    criterion = nn.CrossEntropyLoss(**TrickSet({"label_smoothing": {"smoothing": eps}})
                                    .loss_kwargs())
    q = soft * (1 - eps) + eps / 3
    ref = -(q * torch.log_softmax(logits, 1)).sum(1).mean()
    assert criterion(logits, soft).item() == pytest.approx(ref.item(), rel=1e-6)


def test_registry_names_and_errors() -> None:
    assert "label_smoothing" in list_tricks()
    assert get_trick("label_smoothing").paper
    with pytest.raises(UnknownNameError, match="did you mean 'label_smoothing'"):
        validate_tricks({"labelsmoothing": {}})
    with pytest.raises(ConfigError, match="smoothing: must be in"):
        validate_tricks({"label_smoothing": {"smoothing": -0.1}})
    with pytest.raises(ConfigError, match="expected a number"):
        validate_tricks({"label_smoothing": {"smoothing": "a lot"}})


def test_default_parameters_and_audit() -> None:
    tricks = TrickSet({"label_smoothing": None})
    assert tricks.loss_kwargs() == {"label_smoothing": 0.1}
    (audit,) = tricks.audits()
    assert audit.effective and "0.1" in audit.summary
    (off,) = TrickSet({"label_smoothing": {"smoothing": 0.0}}).audits()
    assert not off.effective
