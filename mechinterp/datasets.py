"""The human data the workbench ships: where it lies, what it is, and under which licence.

Two data sets come inside the package (``mechinterp/data/``), each in its own folder with its upstream licence,
citation and a README:

* ``sap`` — the Syntactic Ambiguity Processing Benchmark (Huang et al. 2024): stimuli of every subset,
  published effect tables (SPR and log RT, by construction and by item), noise ceilings, the benchmark's
  GPT-2 surprisals and the trial-level NP/Z and agreement data. MIT.
* ``naturalstories`` — the Natural Stories corpus (Futrell et al. 2018/2021): text and per-word mean
  self-paced reading times. CC BY-NC-SA 4.0 (non-commercial, share-alike).

``MECHINTERP_DATA`` points the workbench at another copy laid out the same way (a folder holding ``sap/`` and
``naturalstories/``).

Example:
    >>> import mechinterp as mi
    >>> sorted(mi.datasets.DATASETS)
    ['naturalstories', 'sap']
    >>> (mi.datasets.sap_dir() / "stimuli" / "items_ClassicGP.csv").exists()
    True
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mechinterp.errors import ConfigError

ENV_DATA = "MECHINTERP_DATA"
PACKAGE_DATA = Path(__file__).parent / "data"


@dataclass(frozen=True)
class Dataset:
    """One shipped data set.

    Attributes:
        name: the folder name (``sap``, ``naturalstories``).
        title: what it is, in a few words.
        license: the upstream licence.
        license_file: the licence text's file name inside the folder.
        citation: the reference to cite.
        upstream: the repository and commit it was copied from.
    """

    name: str
    title: str
    license: str
    license_file: str
    citation: str
    upstream: str

    @property
    def path(self) -> Path:
        """The folder holding this data set (under :func:`data_dir`)."""
        return data_dir() / self.name

    def files(self) -> list[Path]:
        """Every file of the data set, sorted."""
        return sorted(p for p in self.path.rglob("*") if p.is_file())

    def size_bytes(self) -> int:
        """Total size of the data set's files."""
        return sum(p.stat().st_size for p in self.files())


DATASETS: dict[str, Dataset] = {
    "sap": Dataset(
        name="sap",
        title="SAP Benchmark: garden-path stimuli, self-paced reading effects, noise ceilings, GPT-2 surprisals",
        license="MIT",
        license_file="LICENSE",
        citation=("Huang, Arehalli, Kugemoto, Muxica, Prasad, Dillon & Linzen (2024). Large-scale benchmark yields "
                  "no evidence that language model surprisal explains syntactic disambiguation difficulty. "
                  "Journal of Memory and Language, 137, 104510."),
        upstream="github.com/caplabnyu/sapbenchmark, commit 15e6106",
    ),
    "naturalstories": Dataset(
        name="naturalstories",
        title="Natural Stories corpus: 10 stories, 10,256 words, per-word mean self-paced reading times",
        license="CC BY-NC-SA 4.0",
        license_file="LICENSE.txt",
        citation=("Futrell, Gibson, Tily, Blank, Vishnevetsky, Piantadosi & Fedorenko (2021). The Natural Stories "
                  "corpus: a reading-time corpus of English texts containing rare syntactic constructions. "
                  "Language Resources and Evaluation, 55, 63-77."),
        upstream="github.com/languageMIT/naturalstories, commit 4700daa",
    ),
}


def data_dir() -> Path:
    """The folder holding the data sets: ``$MECHINTERP_DATA`` if set, else the package's own copy.

    Raises:
        ConfigError: ``MECHINTERP_DATA`` names a folder that does not exist.
    """
    env = os.environ.get(ENV_DATA)
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise ConfigError(f"{ENV_DATA}={env} is not a directory (unset it to use the data shipped with the package)")
        return path
    return PACKAGE_DATA


def dataset_dir(name: str) -> Path:
    """The folder of one data set, checked to exist.

    Args:
        name: ``sap`` or ``naturalstories``.

    Raises:
        ConfigError: unknown name, or the folder is missing from :func:`data_dir`.
    """
    if name not in DATASETS:
        raise ConfigError(f"unknown data set {name!r}: known are {', '.join(DATASETS)}")
    path = data_dir() / name
    if not path.is_dir():
        raise ConfigError(f"data set {name!r} is missing: {path} does not exist (check {ENV_DATA})")
    return path


def sap_dir() -> Path:
    """The SAP Benchmark folder (``stimuli/``, ``effects/``, ``surprisal_gpt2/``, ``trials/``)."""
    return dataset_dir("sap")


def naturalstories_dir() -> Path:
    """The Natural Stories folder (``all_stories.tok``, ``processed_wordinfo.tsv``, ``words.tsv``)."""
    return dataset_dir("naturalstories")


def sap_subsets() -> list[str]:
    """The SAP stimulus subsets shipped (``ClassicGP``, ``RelativeClause``, ...)."""
    return sorted(p.stem.removeprefix("items_") for p in (sap_dir() / "stimuli").glob("items_*.csv"))


def sap_stimuli(subset: str = "ClassicGP") -> Path:
    """The stimulus CSV of one SAP subset.

    Args:
        subset: e.g. ``ClassicGP``, ``RelativeClause``, ``AttachmentAmbiguity``, ``Agreement``.

    Raises:
        ConfigError: no such subset.
    """
    path = sap_dir() / "stimuli" / f"items_{subset}.csv"
    if not path.exists():
        raise ConfigError(f"SAP has no stimulus subset {subset!r} (subsets: {', '.join(sap_subsets())})")
    return path
