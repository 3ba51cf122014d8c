"""Likelihood bounds of a trained model: the paper's ELBO and the importance-weighted bound (Burda et al., 2016).

Both are upper bounds on −log p(x), in nats per image. The K-sample bound
    −log (1/K) Σ_k p(x, z_k) / q(z_k | x),   z_k ~ q(z | x)
is never looser than the ELBO in expectation and tightens towards −log p(x) as K grows: a tighter bound on the
same quantity, not a different metric. K = 1 is the ELBO estimator with the KL sampled instead of exact.
"""

from __future__ import annotations

import math
import time

import torch

from draw_exp.data import unpack_batch
from draw_exp.errors import check_int_range


@torch.no_grad()
def elbo_bound(module, x: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
    """The negative ELBO per image ``[B]``: reconstruction plus the exact KL of each step, one z draw per step.
    Given the images' ``indices`` in their split, the draws are the run's own validation and test noise
    (``module.evaluation_terms``), so the bound of a checkpoint is the figure its run logged, to float rounding."""
    return module.evaluation_terms(x, indices)["loss"].double()


@torch.no_grad()
def log_weights(module, x: torch.Tensor, samples: int) -> torch.Tensor:
    """log p(x, z) − log q(z | x) for ``samples`` draws per image: ``[B, samples]`` in float64."""
    batch = x.shape[0]
    repeated = x.unsqueeze(1).expand(batch, samples, *x.shape[1:]).reshape(batch * samples, *x.shape[1:])
    out = module.model(repeated, return_log_ratio=True)
    log_w = -(module.likelihood.nll(out.canvas_logits, repeated) + out.log_ratio.sum(1))
    return log_w.double().view(batch, samples)


@torch.no_grad()
def importance_weighted_bound(module, x: torch.Tensor, k: int, max_batch: int = 2000) -> torch.Tensor:
    """−log (1/K) Σ_k w_k per image ``[B]``, the K draws taken in chunks of at most ``max_batch`` image-samples
    so that K = 5000 fits in memory; the log-sum-exp is taken in float64."""
    check_int_range("iw_samples", k, 1)
    bounds = []
    images_per_chunk = max(1, max_batch // k)
    for start in range(0, x.shape[0], images_per_chunk):
        images = x[start : start + images_per_chunk]
        samples_per_pass = max(1, max_batch // len(images))
        log_w = torch.cat(
            [log_weights(module, images, min(samples_per_pass, k - done)) for done in range(0, k, samples_per_pass)],
            dim=1,
        )
        bounds.append(-(torch.logsumexp(log_w, dim=1) - math.log(k)))
    return torch.cat(bounds)


def summarise(values: torch.Tensor) -> tuple[float, float]:
    """Mean and its standard error over images."""
    n = len(values)
    std = values.std(unbiased=True).item() if n > 1 else float("nan")
    return values.mean().item(), std / math.sqrt(n)


def evaluate(module, loader, iw_samples=(), max_batch: int = 2000, device: str | torch.device = "cpu") -> list[dict]:
    """One row per bound: ``{"bound": "elbo" | "iw", "K", "nll_bound", "stderr", "images", "seconds"}``."""
    module = module.to(device).eval()
    rows = []
    for bound, k in [("elbo", 1)] + [("iw", int(k)) for k in iw_samples]:
        start, values = time.perf_counter(), []
        for batch in loader:
            x, indices = unpack_batch(batch)
            x = x.to(device)
            if bound == "elbo":
                values.append(elbo_bound(module, x, indices))
            else:
                values.append(importance_weighted_bound(module, x, k, max_batch))
        per_image = torch.cat(values).cpu()
        mean, stderr = summarise(per_image)
        row = {
            "bound": bound,
            "K": k,
            "nll_bound": mean,
            "stderr": stderr,
            "images": len(per_image),
            "seconds": round(time.perf_counter() - start, 3),
        }
        if module.likelihood.bits_per_dim:
            row["bits_per_dim"] = module.bits_per_dim(mean)
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [f"{'bound':<6} {'K':>6} {'NLL bound (nats)':>17} {'± s.e.':>8} {'images':>7} {'seconds':>9}"]
    for r in rows:
        lines.append(
            f"{r['bound']:<6} {r['K']:>6} {r['nll_bound']:>17.3f} {r['stderr']:>8.3f} {r['images']:>7} "
            f"{r['seconds']:>9.1f}" + (f"   {r['bits_per_dim']:.4f} bits/dim" if "bits_per_dim" in r else "")
        )
    return "\n".join(lines)


@torch.no_grad()
def evaluate_classifier(module, loader, device: str | torch.device = "cpu") -> dict:
    """The attention classifier's error (percent, with its standard error) and cross-entropy (nats per image)
    over ``(image, label)`` batches: ``{"error", "stderr", "loss", "images", "seconds"}``."""
    module = module.to(device).eval()
    start, wrong, losses = time.perf_counter(), [], []
    for x, labels in loader:
        logits = module.model(x.to(device)).logits
        labels = labels.to(device)
        wrong.append((logits.argmax(1) != labels).double().cpu())
        losses.append(torch.nn.functional.cross_entropy(logits, labels, reduction="none").double().cpu())
    wrong = torch.cat(wrong)
    error, stderr = summarise(100 * wrong)
    return {
        "error": error,
        "stderr": stderr,
        "loss": torch.cat(losses).mean().item(),
        "images": len(wrong),
        "seconds": round(time.perf_counter() - start, 3),
    }


def format_classifier_row(row: dict) -> str:
    return (
        f"{'error (%)':>10} {'± s.e.':>7} {'loss (nats)':>12} {'images':>7} {'seconds':>9}\n"
        f"{row['error']:>10.2f} {row['stderr']:>7.2f} {row['loss']:>12.4f} {row['images']:>7} {row['seconds']:>9.1f}"
    )
