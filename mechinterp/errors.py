"""Errors the workbench raises for bad input. Each names the thing that is wrong and, where it can, the fix."""

from __future__ import annotations


class MechinterpError(Exception):
    """Base class: a problem with the user's input or environment, reported without a traceback by the CLI."""


class UnknownModelError(MechinterpError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class WeightsError(MechinterpError):
    """A weights file is missing, truncated or does not match its recorded hash."""


class SuiteError(MechinterpError, ValueError):
    """A stimulus suite is malformed (bad JSON/CSV, missing fields, duplicate items, empty suite...)."""


class RegionError(SuiteError):
    """A region does not match the sentence (wrong position, out of range, unknown region name...)."""


class CacheError(MechinterpError):
    """An activation cache or results store is corrupt or does not match what was asked for."""


class ConfigError(MechinterpError, ValueError):
    """A configuration (sweep TOML, CLI option, site spec) is invalid."""
