"""mechinterp: a workbench for how language models hold the readings of temporarily ambiguous sentences."""

__version__ = "0.1.0"
