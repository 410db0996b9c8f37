"""Max-activating examples: for every latent, the tokens of a text collection where it fires hardest.

Computed once over the cached training activations right after training (``top_examples.parquet`` in the
SAE directory) or on demand over corpus documents for an SAE trained elsewhere. Rows point to
(document, position), and :func:`context` renders the text around a position from the corpus.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch

from mechinterp.saes.activations import TokenActivations, doc_sequence
from mechinterp.saes.load import LoadedSAE

EXAMPLES_FILE = "top_examples.parquet"


@torch.no_grad()
def top_examples(sae: LoadedSAE, acts: TokenActivations, n_top: int = 20, chunk: int = 4096) -> pd.DataFrame:
    """One row per (feature, rank): the ``n_top`` tokens with the largest activation of each feature
    (rows with activation 0 are dropped), with document index, position and token id."""
    best_v = torch.full((n_top, sae.d_sae), -1.0)
    best_i = torch.full((n_top, sae.d_sae), -1, dtype=torch.long)
    for start in range(0, len(acts), chunk):
        f = sae.encode(acts.acts[start : start + chunk].float())
        idx = torch.arange(start, start + f.shape[0])[:, None].expand_as(f)
        v = torch.cat([best_v, f])
        i = torch.cat([best_i, idx])
        k = min(n_top, v.shape[0])
        top = torch.topk(v, k=k, dim=0)
        best_v, best_i = top.values, i.gather(0, top.indices)
    rank, feat = torch.meshgrid(torch.arange(best_v.shape[0]), torch.arange(sae.d_sae), indexing="ij")
    keep = best_v > 0
    rows = best_i[keep]
    return pd.DataFrame({
        "feature": feat[keep].numpy(), "rank": rank[keep].numpy(), "activation": best_v[keep].numpy(),
        "doc": acts.doc[rows].numpy(), "pos": acts.pos[rows].numpy(), "token_id": acts.token_id[rows].numpy(),
    }).sort_values(["feature", "rank"], ignore_index=True)


def context(model: Any, text: str, pos: int, context_size: int, before: int = 12, after: int = 4) -> tuple[str, str, str]:
    """(left context, the token, right context) of token ``pos`` of a document, as text."""
    ids = doc_sequence(model, text, context_size).input_ids
    if not 1 <= pos < len(ids):
        return "", "", ""
    dec = model.tokenizer.decode
    return dec(list(ids[max(1, pos - before) : pos])), dec([ids[pos]]), dec(list(ids[pos + 1 : pos + 1 + after]))
