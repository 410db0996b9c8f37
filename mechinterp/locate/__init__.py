"""Locate: where the parse lives in the model.

* :mod:`.sites`: typed sites (layer, component, position) and their parsing and resolution per item.
* :mod:`.hooks`: context-managed hooks that read and write sites on every backend.
* :mod:`.cache`: activations at sites streamed to sharded safetensors with a manifest.
* :mod:`.patching`: activation patching (exact and attribution) between the two versions of each item.
* :mod:`.figures`: summaries and heatmaps of patching tables.
"""
