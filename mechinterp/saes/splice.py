"""An SAE spliced into the model at its site, with its error term, so the forward pass is unchanged.

Inside :func:`spliced`, the site's activation ``x`` is replaced by ``decode(f) + err`` with
``f = encode(x)`` and ``err = x - decode(f)``: numerically the same ``x`` (tested), but the feature
activations ``f`` and the error ``err`` are now tensors of the graph, so gradients of anything downstream
with respect to each feature (and the error) are available, and features can be edited (ablated, clamped)
while the error term stays at its clean value. The hook is removed when the block exits.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch
from jaxtyping import Float

from mechinterp.forward import pad_batch
from mechinterp.locate.hooks import write_site
from mechinterp.saes.load import LoadedSAE
from mechinterp.tokenization import TokenizedText

FeatureEdit = Callable[[torch.Tensor], torch.Tensor]  # f [batch, seq, d_sae] -> edited f


@dataclass
class SpliceBox:
    """What the spliced forward pass saw (the last pass run inside the block)."""

    f: torch.Tensor | None = None  # [batch, seq, d_sae]; a leaf with .grad after backward when grad=True
    err: torch.Tensor | None = None  # [batch, seq, d_in]; likewise


@contextmanager
def spliced(model: Any, sae: LoadedSAE, grad: bool = False, edit: FeatureEdit | None = None) -> Iterator[SpliceBox]:
    """Run forward passes with the SAE spliced in (see module docstring). ``edit`` changes the features
    before decoding (the error term is kept). With ``grad``, ``box.f`` and ``box.err`` keep gradients."""
    box = SpliceBox()

    def fn(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            f0 = sae.encode(x.float())
            err = (x.float() - sae.decode(f0)).detach()
        f = f0.detach().requires_grad_(grad)
        e = err.requires_grad_(grad)
        box.f, box.err = f, e
        f_used = edit(f) if edit is not None else f
        return (sae.decode(f_used) + e).to(x.dtype)

    with write_site(model, sae.site, fn):
        yield box


def word_surprisal(
    model: Any, sae: LoadedSAE, seqs: Sequence[TokenizedText], targets: Sequence[range], grad: bool = False,
    edit: FeatureEdit | None = None,
) -> tuple[Float[torch.Tensor, " batch"], SpliceBox, Any]:
    """Surprisal (nats) of the tokens ``targets[i]`` of each sequence (their summed -log p), with the SAE
    spliced in. Logits are computed only where they are needed. With ``grad``, the surprisal of every row is
    back-propagated (rows are independent), so ``box.f.grad[i]`` is d surprisal_i / d f. Returns
    (surprisal, box, batch)."""
    b = pad_batch([s.input_ids for s in seqs], model.pad_token_id, side="right", device=model.device)
    keep = torch.zeros_like(b.input_ids, dtype=torch.bool)
    for i, r in enumerate(targets):
        if len(r) == 0 or r[0] < 1:
            raise ValueError(f"target tokens {r} of {seqs[i].text!r} must be non-empty and after BOS")
        keep[i, [t - 1 for t in r]] = True
    with spliced(model, sae, grad=grad, edit=edit) as box, torch.set_grad_enabled(grad):
        out = model.hf(input_ids=b.input_ids, attention_mask=b.attention_mask, position_ids=b.position_ids,
                       use_cache=False, logits_to_keep=keep)
        logits = out.logits.reshape(-1, out.logits.shape[-1]).float()
        lp = torch.log_softmax(logits, dim=-1)
        rows, cols = keep.nonzero(as_tuple=True)  # row-major: the order of the kept logits
        nll = -lp[torch.arange(len(rows)), b.input_ids[rows, cols + 1]]
        s = torch.zeros(len(seqs), dtype=nll.dtype).index_add(0, rows, nll)
        if grad:
            s.sum().backward()
    return s.detach(), box, b
