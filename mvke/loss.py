"""The training loss, apart from the model: weighted BCE per objective plus an optional kernel diversity term.

- ctr: BCE(sigmoid(logit_ctr), click) over all impressions.
- cvr, cvr_mode="clicked": BCE(sigmoid(logit_cvr), conversion) over clicked samples only
  (masked mean over the batch; 0 when a batch has no click). Under Horovod each rank's batch
  mean is averaged with equal weight, not pooled over every rank's clicks (docs/training.md).
- cvr, cvr_mode="esmm": BCE(p_ctr * p_cvr, click * conversion) over all impressions (ESMM's pCTCVR);
  computed in log space for stability. The model's cvr logit stays pCVR given a click.
- diversity (diversity_weight > 0): mean squared cosine similarity of distinct kernel rows.
The loss returns a tensor; a NaN in it is left for the caller to detect.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.config import CvrMode, ModelConf

OBJECTIVE_LABELS: dict[str, str] = {"ctr": "click", "cvr": "conversion"}
DIVERSITY_TERM = "diversity"


class ProfileLoss(nn.Module):
    """sum_o loss_weights[o] * BCE_o + diversity_weight * diversity(VK); missing weights count 1."""

    def __init__(self, *, loss_weights: Mapping[str, float], cvr_mode: CvrMode, diversity_weight: float = 0.0) -> None:
        super().__init__()
        if cvr_mode not in ("clicked", "esmm"):
            raise ValueError(f"cvr_mode={cvr_mode!r}; valid: 'clicked', 'esmm'")
        self.loss_weights = dict(loss_weights)
        self.cvr_mode = cvr_mode
        self.diversity_weight = float(diversity_weight)

    @classmethod
    def from_conf(cls, conf: ModelConf) -> "ProfileLoss":
        return cls(loss_weights=conf.loss_weights, cvr_mode=conf.cvr_mode, diversity_weight=conf.diversity_weight)

    def terms(self, logits: Mapping[str, Tensor], batch: Mapping[str, Tensor],
              kernels: Tensor | None = None) -> dict[str, Tensor]:
        """Unweighted loss per objective (and "diversity" when enabled): {name: scalar tensor}."""
        unknown = [o for o in logits if o not in OBJECTIVE_LABELS]
        if unknown:
            raise ValueError(f"no label for objectives {unknown}; valid: {list(OBJECTIVE_LABELS)}")
        out = {}
        for objective, logit in logits.items():
            if objective == "cvr":
                out[objective] = self._cvr(logits, batch)
            else:
                label = batch[OBJECTIVE_LABELS[objective]].to(logit.dtype)
                out[objective] = F.binary_cross_entropy_with_logits(logit, label)
        if self.diversity_weight > 0 and kernels is not None:
            out[DIVERSITY_TERM] = kernel_diversity(kernels)
        return out

    def forward(self, logits: Mapping[str, Tensor], batch: Mapping[str, Tensor],
                kernels: Tensor | None = None) -> Tensor:
        """Scalar loss from the model's logits {objective: [B]}, the batch labels and optionally VK [K, E]."""
        total = None
        for name, value in self.terms(logits, batch, kernels).items():
            weight = self.diversity_weight if name == DIVERSITY_TERM else self.loss_weights.get(name, 1.0)
            total = weight * value if total is None else total + weight * value
        if total is None:
            raise ValueError("no logits to compute a loss from")
        return total

    def _cvr(self, logits: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> Tensor:
        cvr = logits["cvr"]
        click = batch["click"].to(cvr.dtype)
        conversion = batch["conversion"].to(cvr.dtype)
        if self.cvr_mode == "clicked":
            per_sample = F.binary_cross_entropy_with_logits(cvr, conversion, reduction="none")  # [B]
            return (per_sample * click).sum() / click.sum().clamp_min(1.0)
        if "ctr" not in logits:
            raise ValueError("cvr_mode=esmm needs the ctr logits next to the cvr logits")
        return esmm_loss(logits["ctr"], cvr, click * conversion)


def esmm_loss(ctr_logit: Tensor, cvr_logit: Tensor, ctcvr_label: Tensor) -> Tensor:
    """Mean BCE of p_ctcvr = sigmoid(ctr) * sigmoid(cvr) against click * conversion, in log space.

    log(1 - p) uses 1 - s(a) s(b) = s(-a) + s(a) s(-b), exact however close p is to 1.
    """
    log_p = F.logsigmoid(ctr_logit) + F.logsigmoid(cvr_logit)  # [B]
    log_not_p = torch.logaddexp(F.logsigmoid(-ctr_logit), F.logsigmoid(ctr_logit) + F.logsigmoid(-cvr_logit))  # [B]
    return -(ctcvr_label * log_p + (1 - ctcvr_label) * log_not_p).mean()


def kernel_diversity(kernels: Tensor) -> Tensor:
    """Mean squared cosine similarity over pairs of distinct kernels (0 when K = 1): VK [K, E] -> scalar."""
    num = kernels.shape[0]
    if num < 2:
        return kernels.sum() * 0.0
    unit = F.normalize(kernels, dim=-1)  # [K, E]
    cos = unit @ unit.T  # [K, K]
    off_diagonal = ~torch.eye(num, dtype=torch.bool, device=kernels.device)
    return (cos[off_diagonal] ** 2).mean()
