"""Find and load suites: built-in ones by name, the shipped SAP Benchmark subsets as ``sap:<Subset>``, or a
SyntaxGym JSON / SAP CSV file by path."""

from __future__ import annotations

from pathlib import Path

from mechinterp.datasets import sap_stimuli
from mechinterp.errors import SuiteError
from mechinterp.stimuli.sap import read_sap
from mechinterp.stimuli.syntaxgym import read_syntaxgym
from mechinterp.stimuli.types import Suite

BUILTIN_DIR = Path(__file__).parent / "builtin"


def builtin_suites() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.json"))


def load_suite(spec: str | Path | Suite) -> Suite:
    """Load a suite.

    Args:
        spec: a built-in suite name (see :func:`builtin_suites`), ``sap:<Subset>`` for a SAP Benchmark subset
            shipped with the package (``sap:ClassicGP``), or the path of a SyntaxGym .json or SAP .csv file.

    Example:
        >>> load_suite("sap:ClassicGP").name
        'items_ClassicGP'
    """
    if isinstance(spec, Suite):
        return spec
    key = str(spec)
    if key.lower().startswith("sap:"):
        return read_sap(sap_stimuli(key[4:]))
    if key in builtin_suites():
        suite = read_syntaxgym(BUILTIN_DIR / f"{key}.json")
        return suite.model_copy(update={"source": f"builtin:{key}"})
    path = Path(key).expanduser()
    if path.suffix.lower() == ".json":
        return read_syntaxgym(path)
    if path.suffix.lower() == ".csv":
        return read_sap(path)
    if path.exists():
        raise SuiteError(f"{path}: unknown suite format (expected a SyntaxGym .json or a SAP Benchmark .csv file)")
    raise SuiteError(
        f"unknown suite {key!r}: built-in suites are {', '.join(builtin_suites()) or '(none installed)'}, "
        "sap:<Subset> for a shipped SAP Benchmark subset, or the path of a SyntaxGym .json or SAP .csv file"
    )
