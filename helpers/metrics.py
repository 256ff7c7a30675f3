"""Multi-label metrics, computed with torchmetrics so the numbers match a well-tested library."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch
from torchmetrics.functional.classification import (
    multilabel_average_precision,
    multilabel_f1_score,
    multilabel_precision,
    multilabel_recall,
)


def per_label_report(
    probs: torch.Tensor, targets: torch.Tensor, vocab: Sequence[str], threshold: float = 0.5
) -> pd.DataFrame:
    """One row per label: support, average precision, and precision/recall/F1 at `threshold`.

    Average precision ranks images by score and needs no threshold; precision, recall and
    F1 depend on the threshold that turns probabilities into yes/no decisions.
    A last row ``macro`` averages the labels with equal weight (mAP is its AP).
    """
    probs, targets = torch.as_tensor(probs).float(), torch.as_tensor(targets).long()
    n = len(vocab)
    kw = {"num_labels": n, "average": None}
    thr = {"threshold": threshold}
    table = pd.DataFrame(
        {
            "support": targets.sum(0).tolist(),
            "AP": multilabel_average_precision(probs, targets, **kw).tolist(),
            "precision": multilabel_precision(probs, targets, **kw, **thr).tolist(),
            "recall": multilabel_recall(probs, targets, **kw, **thr).tolist(),
            "F1": multilabel_f1_score(probs, targets, **kw, **thr).tolist(),
        },
        index=pd.Index(list(vocab), name="label"),
    )
    macro = table.drop(columns="support").mean().to_frame("macro").T
    macro.insert(0, "support", int(targets.sum()))
    return pd.concat([table, macro])


def mean_average_precision(probs: torch.Tensor, targets: torch.Tensor) -> float:
    """Macro mAP: average precision of each label, averaged over labels."""
    targets = torch.as_tensor(targets).long()
    return multilabel_average_precision(
        torch.as_tensor(probs).float(), targets, num_labels=targets.shape[1], average="macro"
    ).item()


@torch.inference_mode()
def predict_probs(model: torch.nn.Module, loader, device: torch.device | str = "cpu"):
    """Sigmoid probabilities and targets for a whole loader, gathered on the CPU."""
    model.eval()
    probs, targets = [], []
    for x, y in loader:
        probs.append(torch.sigmoid(model(x.to(device))).float().cpu())
        targets.append(y)
    return torch.cat(probs), torch.cat(targets)
