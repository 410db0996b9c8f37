"""Every supported architecture family runs the workbench end to end, and an unknown one fails loudly.

Tiny random GPT-2, Llama, Gemma-2 and Gemma-3 models (2 layers, d_model 64; ``tiny_model_dir`` in
``tests/conftest.py``) are loaded from local Hugging Face directories with ``mi.load_model`` and checked on: the
sites' arithmetic (the residual stream is the sum of what attention and the MLP add, the head outputs sum to
the attention projection), word surprisal (batched and padded = one sentence alone = a plain forward pass),
activation patching, a probe, and interventions applied with ``with intervention.apply(model):``. A model whose
blocks match no known layout must be refused with a ConfigError that says how to add a layout.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput, CausalLMOutput

import mechinterp as mi
from mechinterp.errors import ConfigError
from mechinterp.locate.hooks import base_model, block_part, layout_of, read_site, read_sites
from tests.conftest import TINY_ARCHS, assert_no_hooks, tiny_model_dir

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAMILY = {"llama": "llama", "gpt2": "gpt2", "gemma2": "gemma", "gemma3": "gemma"}
HF_CLASS = {"llama": "LlamaForCausalLM", "gpt2": "GPT2LMHeadModel", "gemma2": "Gemma2ForCausalLM",
            "gemma3": "Gemma3ForCausalLM"}
COMPONENTS = ("resid_pre", "attn_out", "resid_mid", "mlp_out", "resid_post")
# longer than the Gemma models' sliding window (8 tokens), so the windowed layer masks something
SENTENCE = "While the man hunted the deer ran into the woods and the dog barked at the moon."


@pytest.fixture(scope="module", params=TINY_ARCHS)
def arch_model(request, tiny_dirs, tmp_path_factory):
    """(architecture, the tiny model of that architecture loaded with ``mi.load_model``)."""
    arch = request.param
    path = tiny_dirs[arch] if arch in tiny_dirs else tiny_model_dir(tmp_path_factory.mktemp("arch"), arch)
    return arch, mi.load_model(str(path))


@pytest.fixture(scope="module")
def suite():
    return mi.load_suite("npz").head(4)


def _ids(model, text: str) -> torch.Tensor:
    toks = model.tokenizer(text, add_special_tokens=False)["input_ids"]
    return torch.tensor([[model.bos_token_id, *toks]])


def test_each_family_loads_with_its_layout(arch_model):
    arch, model = arch_model
    assert type(model.hf).__name__ == HF_CLASS[arch]
    assert layout_of(model).family == FAMILY[arch]
    assert (model.n_layers, model.d_model) == (2, 64)


def test_sites_add_up_to_the_residual_stream(arch_model):
    """resid_pre(L) is HF's hidden state L, resid_mid = resid_pre + attn_out, resid_post = resid_mid + mlp_out
    = resid_pre(L+1), the final norm of the last resid_post is HF's last hidden state, and the head outputs plus
    the projection's bias are the attention output projection."""
    _, model = arch_model
    ids = _ids(model, SENTENCE)
    sites = [mi.Site(L, c) for L in range(model.n_layers) for c in COMPONENTS]
    heads = [mi.Site(L, "head_out", head=h) for L in range(model.n_layers) for h in range(model.n_heads)]
    lay = layout_of(model)
    with read_sites(model, sites + heads) as caps, read_site(model, block_part(model, 1, lay.o_proj)) as o_proj:
        hidden = model.hf(input_ids=ids, output_hidden_states=True).hidden_states
    got = {(s.layer, s.component, s.head): caps[s].value for s in sites + heads}

    def close(a: torch.Tensor, b: torch.Tensor) -> None:
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)

    for L in range(model.n_layers):
        pre, attn, mid, mlp, post = (got[(L, c, None)] for c in COMPONENTS)
        assert pre.shape == (1, ids.shape[1], model.d_model)
        close(pre, hidden[L])
        close(mid, pre + attn)
        close(post, mid + mlp)
        if L + 1 < model.n_layers:
            close(post, got[(L + 1, "resid_pre", None)])
        assert attn.abs().max() > 0 and mlp.abs().max() > 0
    norm = base_model(model).get_submodule(lay.final_norm)
    close(norm(got[(model.n_layers - 1, "resid_post", None)]), hidden[-1])
    bias = getattr(block_part(model, 1, lay.o_proj), "bias", None)
    heads_sum = torch.stack([got[(1, "head_out", h)] for h in range(model.n_heads)]).sum(0)
    close(heads_sum if bias is None else heads_sum + bias, o_proj.value)
    assert_no_hooks(model)


def test_typed_site_reads_agree_across_backends(arch_model, suite):
    """The layout's module paths also hold for the nnsight reader (which walks them as envoys)."""
    _, model = arch_model
    sites = [mi.Site(1, "resid_mid"), mi.Site(1, "attn_out"), mi.Site(0, "head_out", head=1)]
    hf = mi.suite_activations(model, [suite.head(2)], sites)
    nn_ = mi.suite_activations(model, [suite.head(2)], sites, backend="nnsight")
    assert list(hf.labels) == list(nn_.labels) and len(hf.labels) > 0
    for s in sites:
        assert hf.x[s].shape == (len(hf.labels), model.d_model)
        torch.testing.assert_close(hf.x[s], nn_.x[s], atol=1e-4, rtol=1e-4)


def test_surprisal_is_the_same_padded_alone_and_from_a_plain_forward(arch_model):
    """Word surprisal of a sentence batched (and padded) with a longer one equals that of the sentence alone,
    and the words' surprisals add up to the tokens' from one plain forward pass."""
    _, model = arch_model
    short = "The dog barked."
    both = mi.sentence_surprisal(model, [SENTENCE, short])
    alone = mi.sentence_surprisal(model, [short])
    col = "surprisal_bits"
    np.testing.assert_allclose(both[col].to_numpy()[-len(alone):], alone[col].to_numpy(), rtol=1e-4, atol=1e-4)
    ids = _ids(model, short)
    logp = torch.log_softmax(model.hf(input_ids=ids).logits[0, :-1].double(), -1)
    token_bits = -logp.gather(1, ids[0, 1:, None]).sum().item() / np.log(2)
    assert float(alone[col].to_numpy().sum()) == pytest.approx(token_bits, rel=1e-4)


def test_locate_expose_collapse_through_the_public_api(arch_model, suite):
    """Surprisal and garden-path effects, patching every layer, a probe on typed-site activations, and a clamp
    that changes the surprisal only inside ``with clamp.apply(model):``."""
    _, model = arch_model
    before = mi.suite_surprisal(model, suite, show_progress=False)
    bits = before["surprisal_bits"].to_numpy()
    assert len(bits) and np.isfinite(bits).all() and (bits > 0).all()
    effects = mi.garden_path_effects(before, suite)
    assert {str(i) for i in effects["item"]} == {str(it.key) for it in suite.items}
    np.testing.assert_allclose(effects["effect_bits"],
                               effects["surprisal_ambiguous"] - effects["surprisal_unambiguous"], rtol=1e-6)

    patched = mi.patch(model, suite, "resid_pre@*:region=ambiguous/last")
    assert set(patched["layer"]) == set(range(model.n_layers)) and np.isfinite(patched["raw"]).all()
    assert (np.abs(patched["raw"] - patched["corrupt_value"]) > 1e-6).any(), "patching changed nothing"

    site = mi.Site(1, "resid_post")
    acts = mi.suite_activations(model, [suite], [site])
    probe = mi.fit_probe(acts.x[site], acts.labels, groups=acts.groups, site=site)
    assert isinstance(probe, mi.ProbeArtifact) and probe.site == site
    p = probe.predict_proba(acts.x[site])
    assert p.shape == (len(acts.labels),) and bool(((p >= 0) & (p <= 1)).all())

    clamp = mi.fit_intervention(model, "clamp:layer=1,shift=1", suite)
    with clamp.apply(model):
        after = mi.suite_surprisal(model, suite, show_progress=False)
    assert not np.allclose(after["surprisal_bits"], before["surprisal_bits"])
    again = mi.suite_surprisal(model, suite, show_progress=False)
    np.testing.assert_allclose(again["surprisal_bits"], before["surprisal_bits"], rtol=1e-5)
    assert_no_hooks(model)


def test_leace_erases_the_condition_from_the_site_it_edits(arch_model):
    """LEACE fitted on the NP/Z suite at resid_post@1 and applied to it: the activations read there afterwards
    have the same mean in both conditions (the guarantee of the erasure on its fitting data)."""
    _, model = arch_model
    npz = mi.load_suite("npz")
    site = mi.Site(1, "resid_post")

    def gap(acts) -> float:
        x, amb = acts.x[site].double(), torch.from_numpy(np.asarray(acts.labels) == "ambiguous")
        return float((x[amb].mean(0) - x[~amb].mean(0)).norm())

    plain = mi.suite_activations(model, [npz], [site])
    leace = mi.fit_intervention(model, "leace:layers=1", npz)
    with leace.apply(model):
        erased = mi.suite_activations(model, [npz], [site])
    assert gap(plain) > 1e-3
    assert gap(erased) < 1e-4 * gap(plain)
    assert_no_hooks(model)


# ---- an unknown architecture ---------------------------------------------------------------------------------
class MysteryConfig(PretrainedConfig):
    """A made-up architecture: residual blocks that are one linear map each, kept under ``trunk.stages``."""

    model_type = "mechinterp-mystery"

    def __init__(self, vocab_size: int = 64, hidden_size: int = 32, num_hidden_layers: int = 2,
                 num_attention_heads: int = 2, **kwargs):
        self.vocab_size, self.hidden_size = vocab_size, hidden_size
        self.num_hidden_layers, self.num_attention_heads = num_hidden_layers, num_attention_heads
        super().__init__(**kwargs)


class MysteryStage(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.mix = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.tanh(self.mix(x))


class MysteryTrunk(nn.Module):
    def __init__(self, cfg: MysteryConfig):
        super().__init__()
        self.embed = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.stages = nn.ModuleList(MysteryStage(cfg.hidden_size) for _ in range(cfg.num_hidden_layers))

    def forward(self, input_ids: torch.Tensor, **_) -> BaseModelOutput:
        x = self.embed(input_ids)
        for stage in self.stages:
            x = stage(x)
        return BaseModelOutput(last_hidden_state=x)


class MysteryForCausalLM(PreTrainedModel):
    config_class = MysteryConfig
    base_model_prefix = "trunk"

    def __init__(self, cfg: MysteryConfig):
        super().__init__(cfg)
        self.trunk = MysteryTrunk(cfg)
        self.head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.post_init()

    def forward(self, input_ids: torch.Tensor, **kwargs) -> CausalLMOutput:
        return CausalLMOutput(logits=self.head(self.trunk(input_ids).last_hidden_state))


@pytest.fixture(scope="module")
def mystery_model(tiny_dirs, tmp_path_factory):
    """The made-up architecture, registered with the Auto classes, saved with the SmolLM2 tokenizer and loaded
    with ``mi.load_model`` like any local model."""
    from transformers import AutoTokenizer

    AutoConfig.register(MysteryConfig.model_type, MysteryConfig, exist_ok=True)
    AutoModelForCausalLM.register(MysteryConfig, MysteryForCausalLM, exist_ok=True)
    tok = AutoTokenizer.from_pretrained(str(tiny_dirs["llama"]))
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("mystery") / "tiny-mystery"
    MysteryForCausalLM(MysteryConfig(vocab_size=len(tok))).save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return mi.load_model(str(out))


def assert_says_how_to_add_a_layout(message: str, names: str) -> None:
    assert names in message, message
    for known in ("gemma (Gemma-2/3", "llama (Llama", "gpt2 (GPT-2"):
        assert known in message, message
    assert "To add a layout, add a Layout entry to the _LAYOUTS dict in mechinterp/locate/hooks.py" in message


def test_an_unknown_block_list_is_refused_at_the_first_site_use(mystery_model, suite):
    model = mystery_model
    words = mi.sentence_surprisal(model, [SENTENCE])  # surprisal needs no layout
    assert len(words) == len(SENTENCE.split()) and np.isfinite(words["surprisal_bits"]).all()
    with pytest.raises(ConfigError) as exc:
        mi.suite_activations(model, [suite], [mi.Site(0, "resid_post")])
    assert_says_how_to_add_a_layout(str(exc.value), "MysteryForCausalLM")
    assert "none of the block lists 'layers' or 'h'" in str(exc.value)
    with pytest.raises(ConfigError, match="MysteryForCausalLM"):
        mi.patch(model, suite, "resid_pre@0:region=ambiguous/last")
    with pytest.raises(ConfigError, match="MysteryForCausalLM"):
        mi.fit_intervention(model, "clamp:layer=1,shift=1", suite)
    assert_no_hooks(model)


def test_a_block_with_unknown_submodules_is_refused(tiny_dirs, suite):
    """A Llama whose blocks' attention and MLP were renamed matches no layout (not even a wrong one)."""
    model = mi.load_model(str(tiny_dirs["llama"]), cached=False)
    for blk in base_model(model).get_submodule("layers").children():
        blk._modules["attention"] = blk._modules.pop("self_attn")
        blk._modules["feed_forward"] = blk._modules.pop("mlp")
    with pytest.raises(ConfigError) as exc:
        mi.suite_activations(model, [suite], [mi.Site(1, "attn_out")])
    assert_says_how_to_add_a_layout(str(exc.value), "LlamaForCausalLM")
    assert "'layers' holds LlamaDecoderLayer blocks" in str(exc.value)
    assert_no_hooks(model)
