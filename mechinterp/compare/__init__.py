"""Compare: the model's garden-path effects against people's.

* :mod:`.humans`: human reading data (SAP Benchmark effects, Natural Stories reading times).
* :mod:`.linking`: the surprisal-to-ms linking function fit on Natural Stories.
* :mod:`.likeness`: the human-likeness comparison (predicted ms vs human effects, order, item correlations).
* :mod:`.figures`: its report.
"""
