"""Sparse autoencoders, trained offline with SAE-Lens, and the features that carry each reading.

One module per job (follow a feature from the corpus to its card by reading them in this order):

* :mod:`~mechinterp.saes.corpus` -- training text from Debian packages (WordNet glosses and examples by
  default; fortunes opt-in) or built-in templates, fetched once into the user cache (``load_corpus``).
* :mod:`~mechinterp.saes.activations` -- one site's activations over corpus documents, BOS left out, each
  row remembering its document and position (``corpus_activations``).
* :mod:`~mechinterp.saes.train` -- SAE-Lens ``SAETrainer`` on centred activations with ``b_dec`` at the data
  mean (``fit_sae``), and the whole recipe with quality and examples (``train_sae``, ``TrainConfig``).
* :mod:`~mechinterp.saes.load` -- any SAE-Lens SAE directory and its site (``load_sae`` -> ``LoadedSAE``).
* :mod:`~mechinterp.saes.quality` -- L0, variance explained, dead latents, spliced-in cross-entropy.
* :mod:`~mechinterp.saes.splice` -- the SAE in the model with its error term (exact forward pass; feature
  gradients and edits).
* :mod:`~mechinterp.saes.stats` -- paired sign-flip permutation tests and Benjamini-Hochberg q-values.
* :mod:`~mechinterp.saes.features` -- features whose activation differs between the readings, with a
  lexical baseline, attribution to the garden-path effect and ablation checks (``suite_features``).
* :mod:`~mechinterp.saes.examples` -- max-activating examples of every latent.
* :mod:`~mechinterp.saes.cards` -- feature cards (contexts, sentence profile, probe cosines).
* :mod:`~mechinterp.saes.figures` -- plotly figures and report blocks built from the tables above.

The command line is ``mechinterp sae corpus|train|quality|features|card`` (:mod:`mechinterp.cli.sae`).
"""
