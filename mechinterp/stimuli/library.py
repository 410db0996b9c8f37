"""Find and load suites: built-in ones by name, the shipped SAP Benchmark subsets as ``sap:<Subset>``, or a file
by path.

Formats, by file name: ``.json`` is a SyntaxGym test suite (:mod:`mechinterp.stimuli.syntaxgym`); ``.tsv`` is
a spreadsheet of stimuli (:mod:`mechinterp.stimuli.table`); ``.csv`` is a spreadsheet if its header has
``item`` and ``condition`` and none of the SAP Benchmark's sentence/position columns, and a SAP Benchmark
file (:mod:`mechinterp.stimuli.sap`) otherwise.
"""

from __future__ import annotations

import csv
from pathlib import Path

from mechinterp.datasets import sap_stimuli
from mechinterp.errors import SuiteError
from mechinterp.stimuli.sap import read_sap
from mechinterp.stimuli.syntaxgym import read_syntaxgym
from mechinterp.stimuli.table import is_spreadsheet, read_spreadsheet
from mechinterp.stimuli.types import Suite

BUILTIN_DIR = Path(__file__).parent / "builtin"


def builtin_suites() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.json"))


def suite_format(path: str | Path) -> str:
    """The format a suite file will be read as.

    Args:
        path: A suite file.

    Returns:
        ``"syntaxgym-json"``, ``"table"`` or ``"sap-csv"``.

    Raises:
        SuiteError: The file's name or header fits no format.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_dir():
        raise SuiteError(f"suite file {path} is a directory: give a SyntaxGym .json or a .csv/.tsv file")
    if suffix == ".json":
        return "syntaxgym-json"
    if suffix == ".tsv":
        return "table"
    if suffix == ".csv":
        try:
            with path.open(encoding="utf-8-sig", errors="replace", newline="") as f:
                header = next(csv.reader(f), [])
        except FileNotFoundError:
            raise SuiteError(f"suite file {path} does not exist") from None
        except OSError as exc:
            raise SuiteError(f"suite file {path} cannot be read: {exc.strerror or exc}") from None
        return "table" if is_spreadsheet([h.strip() for h in header]) else "sap-csv"
    raise SuiteError(f"{path}: unknown suite format (expected a SyntaxGym .json, a .csv/.tsv spreadsheet or a SAP .csv file)")


def load_suite(spec: str | Path | Suite) -> Suite:
    """Load a suite.

    Args:
        spec: A built-in suite name (see :func:`builtin_suites`), ``sap:<Subset>`` for a SAP Benchmark subset
            shipped with the package (``sap:ClassicGP``), a :class:`Suite`, or the path of a SyntaxGym ``.json``,
            a ``.csv``/``.tsv`` spreadsheet or a SAP Benchmark ``.csv`` file.

    Returns:
        The validated suite.

    Raises:
        SuiteError: Unknown name or format, or a malformed file.

    Example:
        >>> import mechinterp as mi
        >>> mi.load_suite("sap:ClassicGP").name
        'items_ClassicGP'
        >>> mi.load_suite("npz").constructions
        ['NP/Z']
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
    if path.suffix.lower() in (".json", ".csv", ".tsv"):
        readers = {"syntaxgym-json": read_syntaxgym, "table": read_spreadsheet, "sap-csv": read_sap}
        return readers[suite_format(path)](path)
    if path.exists():
        suite_format(path)
    raise SuiteError(
        f"unknown suite {key!r}: built-in suites are {', '.join(builtin_suites()) or '(none installed)'}, "
        "sap:<Subset> for a shipped SAP Benchmark subset, or the path of a SyntaxGym .json, a .csv/.tsv "
        "spreadsheet or a SAP .csv file"
    )
