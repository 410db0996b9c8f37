"""How good an SAE is, on held-out text: sparsity, reconstruction, dead latents, and the language-modelling
loss when the SAE's reconstruction replaces the activation in the model.

* ``l0``: mean number of active latents per token.
* ``fve``: fraction of variance explained, ``1 - sum |x - x_hat|^2 / sum |x - mean(x)|^2`` over held-out
  tokens (BOS left out; the mean is the held-out mean, so a constant reconstruction scores 0).
* ``dead_fraction``: latents that never fire on the held-out tokens.
* ``ce_*``: next-token cross-entropy (nats/token) with the site clean, replaced by the SAE reconstruction,
  zero-ablated, and mean-ablated (the training mean). Only non-BOS positions are replaced, and only the
  predictions made at replaced positions are scored. ``ce_recovered_vs_zero = (ce_zero - ce_sae) /
  (ce_zero - ce_clean)`` (1 = as good as the clean model), likewise against mean-ablation; ``kl_*`` is
  the mean KL divergence (nats) of each variant's next-token distribution from the clean one.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from jaxtyping import Float

from mechinterp.errors import ConfigError
from mechinterp.forward import pad_batch
from mechinterp.locate.hooks import write_site
from mechinterp.progress import progress
from mechinterp.saes.load import LoadedSAE
from mechinterp.tokenization import TokenizedText


@dataclass(frozen=True)
class ReconstructionStats:
    n_tokens: int
    l0: float
    fve: float
    mse: float  # mean squared error per token, summed over dimensions
    cosine: float  # mean cosine similarity of x and x_hat
    dead_fraction: float
    dense_fraction: float  # latents active on more than 10% of tokens
    log10_density: list[float]  # per latent: log10 of its firing frequency (-inf -> -10)


@dataclass(frozen=True)
class SpliceStats:
    n_tokens: int
    ce_clean: float
    ce_sae: float
    ce_zero: float
    ce_mean: float
    kl_sae: float
    kl_zero: float
    kl_mean: float

    @property
    def ce_recovered_vs_zero(self) -> float:
        return _recovered(self.ce_clean, self.ce_sae, self.ce_zero)

    @property
    def ce_recovered_vs_mean(self) -> float:
        return _recovered(self.ce_clean, self.ce_sae, self.ce_mean)


def _recovered(clean: float, sae: float, ablated: float) -> float:
    gap = ablated - clean
    return float((ablated - sae) / gap) if abs(gap) > 1e-12 else float("nan")


@torch.no_grad()
def reconstruction_stats(sae: LoadedSAE, acts: Float[torch.Tensor, "n d"], chunk: int = 4096) -> ReconstructionStats:
    """Sparsity, reconstruction and dead latents of ``sae`` on held-out activations (BOS already left out)."""
    if acts.ndim != 2 or acts.shape[1] != sae.d_in:
        raise ConfigError(f"held-out activations have shape {tuple(acts.shape)}, the SAE reads {sae.d_in}-d vectors")
    n = acts.shape[0]
    mean = acts.double().mean(0)
    fired = torch.zeros(sae.d_sae, dtype=torch.float64)
    l0 = err = tot = cos = 0.0
    for i in range(0, n, chunk):
        x = acts[i : i + chunk].float()
        f = sae.encode(x)
        xh = sae.decode(f)
        active = f > 0
        l0 += active.sum().item()
        fired += active.sum(0).double()
        err += (x - xh).double().pow(2).sum().item()
        tot += (x.double() - mean).pow(2).sum().item()
        cos += torch.nn.functional.cosine_similarity(x, xh, dim=-1).double().sum().item()
    freq = fired / n
    log10 = torch.where(freq > 0, freq.clamp_min(1e-300).log10(), torch.full_like(freq, -10.0))
    return ReconstructionStats(
        n_tokens=n, l0=l0 / n, fve=1.0 - err / tot if tot > 0 else float("nan"), mse=err / n, cosine=cos / n,
        dead_fraction=float((fired == 0).double().mean()), dense_fraction=float((freq > 0.1).double().mean()),
        log10_density=[round(float(v), 4) for v in log10],
    )


def _non_bos(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """Apply ``fn`` to every position but 0 (BOS; batches are right-padded so BOS is always column 0)."""

    def write(act: torch.Tensor) -> torch.Tensor:
        new = act.clone()
        new[:, 1:] = fn(act[:, 1:]).to(act.dtype)
        return new

    return write


def _ce_and_logp(logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-prediction CE (predictions at positions 1..T-2 of the next token) and the log-probs, masked."""
    lp = torch.log_softmax(logits[:, 1:-1].float(), dim=-1)
    tgt = ids[:, 2:]
    ce = -lp.gather(-1, tgt[..., None]).squeeze(-1)
    valid = mask[:, 2:].bool()
    return ce[valid], lp[valid]


@torch.no_grad()
def splice_stats(
    model: Any, sae: LoadedSAE, seqs: Sequence[TokenizedText], mean: Float[torch.Tensor, " d"],
    batch_size: int = 8,
) -> SpliceStats:
    """Cross-entropy and KL with the site clean, SAE-reconstructed, zero- and mean-ablated (see module doc)."""
    sae.check_model(model)
    seqs = [s for s in seqs if len(s) >= 3]
    if not seqs:
        raise ConfigError("no held-out sequence has the 3 tokens needed to score a prediction at a replaced position")
    site = sae.site
    mean = mean.float()
    variants: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "sae": lambda x: sae.decode(sae.encode(x)),
        "zero": lambda x: torch.zeros_like(x),
        "mean": lambda x: mean.to(x.dtype).expand_as(x),
    }
    sums = {k: 0.0 for k in ("clean", *variants)}
    kls = {k: 0.0 for k in variants}
    n = 0
    for start in progress(range(0, len(seqs), batch_size), desc="CE with SAE spliced in"):
        chunk = seqs[start : start + batch_size]
        b = pad_batch([s.input_ids for s in chunk], model.pad_token_id, side="right", device=model.device)
        kw = dict(input_ids=b.input_ids, attention_mask=b.attention_mask, position_ids=b.position_ids, use_cache=False)
        ce0, lp0 = _ce_and_logp(model.hf(**kw).logits, b.input_ids, b.attention_mask)
        sums["clean"] += ce0.double().sum().item()
        n += ce0.numel()
        p0 = lp0.exp()
        for name, fn in variants.items():
            with write_site(model, site, _non_bos(fn)):
                ce, lp = _ce_and_logp(model.hf(**kw).logits, b.input_ids, b.attention_mask)
            sums[name] += ce.double().sum().item()
            kls[name] += (p0 * (lp0 - lp)).sum(-1).double().sum().item()
    return SpliceStats(
        n_tokens=n, ce_clean=sums["clean"] / n, ce_sae=sums["sae"] / n, ce_zero=sums["zero"] / n,
        ce_mean=sums["mean"] / n, kl_sae=kls["sae"] / n, kl_zero=kls["zero"] / n, kl_mean=kls["mean"] / n,
    )


def quality_record(rec: ReconstructionStats, splice: SpliceStats | None, **extra: Any) -> dict[str, Any]:
    """The JSON written as ``quality.json``: every statistic, the derived ratios, and ``extra`` (tokens seen,
    wall time, ...). The per-latent density list goes last."""
    out: dict[str, Any] = dict(extra)
    r = asdict(rec)
    density = r.pop("log10_density")
    out["heldout"] = r
    if splice is not None:
        s = asdict(splice)
        s["ce_recovered_vs_zero"] = splice.ce_recovered_vs_zero
        s["ce_recovered_vs_mean"] = splice.ce_recovered_vs_mean
        out["spliced"] = s
    out["log10_density"] = density
    return json_safe(out)


def json_safe(obj: Any) -> Any:
    """NaN/inf become None (strict JSON)."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return None if not math.isfinite(float(obj)) else float(obj)
    return obj
