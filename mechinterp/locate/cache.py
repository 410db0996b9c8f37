"""A disk-backed activation cache: sharded safetensors files plus a JSON manifest.

Layout: ``OUT/<key>/manifest.json`` and ``OUT/<key>/shard-00000.safetensors`` ..., where ``key`` is a
content address: the first 16 hex digits of the sha256 of (model weights sha256, suite sha256, the sites,
the cache config that changes the contents, the format version). Running again with the same inputs finds
the same directory and reuses it; different inputs never collide.

* **Streaming.** The suite's sequences (every item x condition, in suite order) are cut into shards of
  ``shard_size`` sequences; each shard is collected in batches of ``batch_size`` and handed to one writer
  thread, which serialises, syncs and hashes it while the next shard is collected (at most one write in
  flight), so memory is bounded by two shards, not by the suite.
* **Atomic shards, resumable runs.** A shard is written to a temporary name and renamed into place; the
  manifest (also written via rename) lists a shard only after its rename. A run that stops part-way leaves a
  manifest with ``complete: false`` and the shards finished so far; the next run with the same inputs
  continues from there. A reader only ever sees complete shards, and :meth:`ActivationCache.open` refuses an
  incomplete cache.
* **Stored once.** Sites that read the very same memory in the forward pass (``resid_post`` of layer L is
  ``resid_pre`` of layer L+1) are written once per shard; the manifest's ``aliases`` maps the other name to it.
* **Lazy loading.** Opening reads the manifest only. Tensors are read per site and per shard through
  ``safetensors.safe_open`` (memory-mapped), and only the site asked for.
* **Rows.** Each site's tensor has one row per (sequence, position): for ``last``/``first``/``mean`` and
  token positions one row per sequence that has the position, for ``all`` (or no position) one per token.
  The manifest records, for every row, its item, condition, region and token index (and token text);
  sequences where a site's region is empty (the cue in the ambiguous condition) have no row for that site.
* **Errors.** A corrupt or truncated manifest or shard raises :class:`~mechinterp.errors.CacheError` naming
  the file and the fix (delete it and run the same command again).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import struct
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal, Sequence

import pandas as pd
import torch
from jaxtyping import Float
from safetensors import SafetensorError, safe_open
from torch import Tensor

from mechinterp.errors import CacheError, ConfigError, SuiteError
from mechinterp.io import atomic_path, remove_stale_temporaries, sha256_file, write_json_atomic
from mechinterp.locate.activations import collect_rows
from mechinterp.locate.sites import (
    RegionPos,
    Site,
    TokenPos,
    parse_sites,
    region_number,
    region_of_token,
)
from mechinterp.models.placement import DTYPES, dtype_name
from mechinterp.provenance import Provenance
from mechinterp.tokenization import tokenize_condition

if TYPE_CHECKING:
    from mechinterp.models import Model
    from mechinterp.stimuli.types import Suite

FORMAT = "mechinterp-activation-cache/2"
READABLE = ("mechinterp-activation-cache/1", FORMAT)  # /1 had no aliases
MANIFEST = "manifest.json"
_ST_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
              torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL"}
LOCK = ".lock"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CacheConfig:
    """How to cache. ``batch_size`` and ``backend`` do not change the contents (collection is padding- and
    backend-invariant up to float32 rounding) and are not part of the key; the rest is."""

    shard_size: int = 64  # sequences per shard
    batch_size: int = 16
    store_dtype: Literal["float32", "float16", "bfloat16"] = "float32"  # the stored precision
    conditions: tuple[str, ...] | None = None  # None: every condition
    backend: Literal["hf", "transformer_lens", "nnsight"] = "hf"

    def __post_init__(self) -> None:
        if self.shard_size < 1 or self.batch_size < 1:
            raise ConfigError("shard_size and batch_size must be >= 1")
        if self.store_dtype not in DTYPES:
            raise ConfigError(f"store_dtype must be one of {', '.join(DTYPES)}, got {self.store_dtype!r}")

    def keyed(self) -> dict[str, Any]:
        return {"shard_size": self.shard_size, "dtype": self.store_dtype,
                "conditions": list(self.conditions) if self.conditions else None}


def cache_key(model: "Model", suite: "Suite", sites: Sequence[Site], config: CacheConfig) -> str:
    payload = {
        "format": FORMAT,
        "model": model.weights_sha256,
        "suite": suite.sha256,
        "sites": [str(s) for s in sites],
        "config": config.keyed(),
    }
    if model.dtype != torch.float32:  # activations of the same weights in another precision
        payload["model_dtype"] = dtype_name(model.dtype)
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _write_json(path: Path, obj: Any) -> None:
    write_json_atomic(path, obj, separators=(",", ":"))


def _pos_key(site: Site) -> str:
    """Sites at the same position share their row metadata."""
    p = site.position
    if p is None:
        return "all-tokens"
    return p.label if not isinstance(p, RegionPos) else f"region={p.region}/{p.which}"


def _sequences(suite: "Suite", config: CacheConfig) -> list[tuple[Any, Any]]:
    out = []
    for it in suite.items:
        for c in it.conditions:
            if config.conditions is None or c.name in config.conditions:
                out.append((it, c))
    if not out:
        raise ConfigError(f"suite {suite.name!r} has no condition named {', '.join(config.conditions or [])}")
    return out


# ---- reading -----------------------------------------------------------------------------------------
class ActivationCache:
    """A finished cache, opened lazily: nothing but the manifest is read until a site is asked for."""

    def __init__(self, root: Path, manifest: dict[str, Any]):
        self.root = Path(root)
        self.manifest = manifest
        self.sites: list[Site] = [Site(**_site_from_json(s)) for s in manifest["sites"]]
        self._names = {s: n for s, n in zip(self.sites, manifest["site_names"])}

    # -- opening --
    @staticmethod
    def _read_manifest(root: Path) -> dict[str, Any]:
        path = Path(root) / MANIFEST
        if not path.exists():
            raise CacheError(f"{root} is not an activation cache (no {MANIFEST}); build it with `mechinterp cache`")
        try:
            m = json.loads(path.read_text())
            if m.get("format") not in READABLE:
                raise ValueError(f"format {m.get('format')!r}, expected {FORMAT!r}")
            for k in ("key", "sites", "site_names", "shards", "complete"):
                if k not in m:
                    raise ValueError(f"missing field {k!r}")
        except (ValueError, OSError, AttributeError) as exc:
            raise CacheError(
                f"cache manifest {path} is corrupt ({exc}). Fix: delete {path.parent} and run the same "
                "`mechinterp cache` command again to rebuild it."
            ) from exc
        return m

    @classmethod
    def open(cls, root: str | Path) -> "ActivationCache":
        root = Path(root)
        m = cls._read_manifest(root)
        if not m["complete"]:
            raise CacheError(
                f"cache {root} is incomplete ({len(m['shards'])} of {m.get('n_shards', '?')} shards): run the same "
                "`mechinterp cache` command again to finish it"
            )
        cache = cls(root, m)
        for sh in m["shards"]:
            cache._check_shard(sh)
        return cache

    def _check_shard(self, sh: dict[str, Any]) -> Path:
        path = self.root / sh["file"]
        if not path.exists():
            raise CacheError(f"cache shard {path} is missing. Fix: run the same `mechinterp cache` command again to rebuild it.")
        size = path.stat().st_size
        if size != sh["bytes"]:
            raise CacheError(
                f"cache shard {path} is corrupt ({size} bytes, expected {sh['bytes']}). Fix: delete {path} and run "
                "the same `mechinterp cache` command again; only that shard is rebuilt."
            )
        return path

    def verify(self) -> None:
        """Check every shard's sha256 against the manifest (reads all the data)."""
        for sh in self.manifest["shards"]:
            path = self._check_shard(sh)
            if sha256_file(path) != sh["sha256"]:
                raise CacheError(
                    f"cache shard {path} is corrupt (sha256 mismatch). Fix: delete {path} and run the same "
                    "`mechinterp cache` command again; only that shard is rebuilt."
                )

    # -- data --
    @property
    def key(self) -> str:
        return self.manifest["key"]

    @property
    def provenance(self) -> dict[str, Any]:
        return self.manifest["provenance"]

    def shape(self, site: Site) -> tuple[int, int]:
        name = self._name(site)
        return (sum(sh["rows"][name] for sh in self.manifest["shards"]), self.manifest["d_model"])

    def _name(self, site: Site) -> str:
        if site not in self._names:
            have = ", ".join(self.manifest["site_names"][:6])
            raise CacheError(f"site {site} is not in cache {self.root} (it has {have}...)")
        return self._names[site]

    def iter_shards(self, site: Site) -> Iterator[Float[Tensor, "n d"]]:
        """The site's rows shard by shard (each read from a memory-mapped file)."""
        name = self._name(site)
        for sh in self.manifest["shards"]:
            path = self._check_shard(sh)
            try:
                with safe_open(str(path), framework="pt") as f:
                    yield f.get_tensor(sh.get("aliases", {}).get(name, name))
            except (SafetensorError, OSError, RuntimeError) as exc:
                raise CacheError(
                    f"cache shard {path} is corrupt ({exc}). Fix: delete {path} and run the same `mechinterp cache` "
                    "command again; only that shard is rebuilt."
                ) from exc

    def get(self, site: Site) -> Float[Tensor, "n d"]:
        """All rows of one site (rows in the order of :meth:`rows`)."""
        parts = list(self.iter_shards(site))
        return torch.cat(parts) if parts else torch.empty(0, self.manifest["d_model"])

    __getitem__ = get

    def rows(self, site: Site) -> pd.DataFrame:
        """One row per activation row of ``site``: item, condition, region, token (index), token_str, shard."""
        self._name(site)
        key = _pos_key(site)
        frames = []
        for i, sh in enumerate(self.manifest["shards"]):
            df = pd.DataFrame(sh["meta"][key])
            df["shard"] = i
            frames.append(df)
        return pd.concat(frames, ignore_index=True)


def _site_to_json(s: Site) -> dict[str, Any]:
    d = asdict(s)
    if isinstance(s.position, RegionPos):
        d["position"] = {"region": s.position.region, "which": s.position.which}
    elif s.position is not None:
        d["position"] = {"index": s.position.index}
    return d


def _site_from_json(d: dict[str, Any]) -> dict[str, Any]:
    p = d.get("position")
    pos = None if p is None else (RegionPos(p["region"], p["which"]) if "region" in p else TokenPos(p["index"]))
    return {"layer": d["layer"], "component": d["component"], "position": pos, "head": d["head"]}


# ---- writing -----------------------------------------------------------------------------------------
def build_cache(
    model: "Model",
    suite: "Suite",
    sites: Sequence[Site],
    out: str | Path,
    config: CacheConfig = CacheConfig(),
    on_shard: Callable[[int, int], None] | None = None,
) -> tuple[ActivationCache, bool]:
    """Build (or reuse, or resume) the cache of ``sites`` over ``suite`` under ``out``. Returns the opened
    cache and whether it was reused as it was. ``on_shard(done, total)`` is called after each shard is
    listed in the manifest (from the writer thread; an exception it raises stops the build before the next
    shard is written)."""
    sites = list(dict.fromkeys(sites))
    if not sites:
        raise ConfigError("no sites to cache")
    for s in sites:
        if not 0 <= s.layer < model.n_layers:
            raise ConfigError(f"site {s}: layer {s.layer} is out of range (model has layers 0-{model.n_layers - 1})")
    seqs = _sequences(suite, config)
    check_sites_cover(model, suite, sites, seqs)
    key = cache_key(model, suite, sites, config)
    root = Path(out) / key[:16]
    if Path(out).exists() and not Path(out).is_dir():
        raise ConfigError(f"cache root {out} is a file: give a directory (--out-dir)")
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root):
        return _build_locked(model, suite, sites, config, on_shard, key, root, seqs)


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``root/.lock``: one build per cache directory at a time. A second run into the
    same cache waits for the first, saying so once on stderr (``waiting for the lock on ROOT held by pid N``),
    and then reuses or resumes what the first wrote. The holder writes its pid into the lock file; the lock goes
    with the process, also when it is killed."""
    with open(root / LOCK, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("waiting for the lock on %s held by %s (another run building the same cache); this run "
                        "then reuses or resumes what it wrote", root, lock_holder(root))
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def lock_holder(root: str | Path) -> str:
    """Who holds (or last held) the build lock of the cache directory ``root``: ``pid N``, or ``another
    process`` when the lock file names no running process."""
    try:
        text = (Path(root) / LOCK).read_text().strip()
    except OSError:
        text = ""
    if text.isdigit():
        try:
            os.kill(int(text), 0)
        except ProcessLookupError:
            return "another process"
        except PermissionError:  # another user's process
            pass
        return f"pid {text}"
    return "another process"


def write_canonical_safetensors(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str]) -> tuple[str, dict[str, str]]:
    """Write ``tensors`` as a safetensors file with a canonical header (keys sorted, data in name order), so the
    same tensors and metadata always give the same bytes (``safetensors.save_file`` orders the metadata as a
    hash map does, which differs between processes). The data is streamed from the tensors' own memory (no
    copy) and hashed as it is written. A tensor given under several names (the same object) is written once,
    under the first of its names in sorted order.

    Returns:
        The file's sha256, and ``{name: stored name}`` for each name whose tensor is stored under another.
    """
    header: dict[str, Any] = {"__metadata__": dict(sorted(metadata.items()))}
    arrays, offset = [], 0
    stored: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for name in sorted(tensors):
        if id(tensors[name]) in stored:
            aliases[name] = stored[id(tensors[name])]
            continue
        stored[id(tensors[name])] = name
        t = tensors[name].detach().contiguous().cpu()
        n = t.numel() * t.element_size()
        header[name] = {"dtype": _ST_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + n]}
        arrays.append(t.reshape(-1).view(torch.uint8).numpy() if n else None)
        offset += n
    head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for chunk in (struct.pack("<Q", len(head)) + head, *(memoryview(a) for a in arrays if a is not None)):
            digest.update(chunk)
            f.write(chunk)
    return digest.hexdigest(), aliases


def _build_locked(model: "Model", suite: "Suite", sites: list[Site], config: CacheConfig,
                  on_shard: Callable[[int, int], None] | None, key: str, root: Path,
                  seqs: list[tuple[Any, Any]]) -> tuple[ActivationCache, bool]:
    n_shards = (len(seqs) + config.shard_size - 1) // config.shard_size
    mpath = root / MANIFEST
    if mpath.exists():
        manifest = ActivationCache._read_manifest(root)
        if manifest["key"] != key:
            raise CacheError(f"{mpath} belongs to another cache (key {manifest['key'][:16]}). Fix: delete {root}.")
        if manifest["complete"] and all((root / sh["file"]).exists() for sh in manifest["shards"]):
            return ActivationCache.open(root), True
        manifest["complete"] = False  # resume (or rebuild deleted shards)
    else:
        prov = Provenance(command="cache", config={**asdict(config), "sites": [str(s) for s in sites]},
                          model=model.identity(), suite=suite.identity())
        manifest = {
            "format": FORMAT, "key": key, "complete": False, "n_shards": n_shards, "n_sequences": len(seqs),
            "d_model": model.d_model, "dtype": config.store_dtype,
            "sites": [_site_to_json(s) for s in sites], "site_names": [str(s) for s in sites],
            "provenance": prov.to_json(), "shards": [],
        }
        _write_json(mpath, manifest)
    remove_stale_temporaries(root)
    reader = ActivationCache(root, manifest)
    done = {}
    for sh in manifest["shards"]:
        if (root / sh["file"]).exists():
            reader._check_shard(sh)  # a truncated shard listed as done: CacheError with the fix
            done[sh["index"]] = sh
    manifest["shards"] = [done[i] for i in sorted(done)]
    names = [str(s) for s in sites]
    dtype = DTYPES[config.store_dtype]

    def write_shard(index: int, tensors: dict[str, Tensor], meta: dict[str, dict[str, list]]) -> None:
        file = f"shard-{index:05d}.safetensors"
        with atomic_path(root / file, fsync=True) as tmp:
            sha, aliases = write_canonical_safetensors(tmp, tensors, {"format": FORMAT, "key": key,
                                                                      "index": str(index)})
        manifest["shards"].append({
            "index": index, "file": file, "bytes": (root / file).stat().st_size, "sha256": sha,
            "rows": {n: int(t.shape[0]) for n, t in tensors.items()}, "aliases": aliases, "meta": meta,
        })
        manifest["shards"].sort(key=lambda sh: sh["index"])
        _write_json(mpath, manifest)
        if on_shard is not None:
            on_shard(len(manifest["shards"]), n_shards)

    # One writer thread: a shard is serialised, synced, hashed and listed while the next one is collected
    # (file I/O and hashing release the GIL). At most one write is in flight, so memory stays bounded by two
    # shards and shards are listed in order; the manifest is only touched by the writer.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mechinterp-cache") as writer:
        pending: Future | None = None
        for index in range(n_shards):
            if index in done:
                continue
            chunk = seqs[index * config.shard_size : (index + 1) * config.shard_size]
            toks = [tokenize_condition(model, c) for _, c in chunk]
            got = collect_rows(model, toks, sites, config.backend, config.batch_size, suite, missing="skip",
                               share=True)
            meta = _shard_meta(model, suite, sites, got.rows, chunk, toks, index * config.shard_size)
            # sites that read the same memory share one tensor (resid_post@L is resid_pre@L+1): stored once
            converted: dict[int, Tensor] = {}
            for s in sites:
                converted.setdefault(id(got.tensors[s]), got.tensors[s].to(dtype).contiguous())
            tensors = {n: converted[id(got.tensors[s])] for n, s in zip(names, sites)}
            if pending is not None:
                pending.result()
            pending = writer.submit(write_shard, index, tensors, meta)
        if pending is not None:
            pending.result()
    for n in names:
        if not sum(sh["rows"].get(n, 0) for sh in manifest["shards"]):
            raise CacheError(f"site {n} has no row in any sequence of suite {suite.name!r} (its region is empty "
                             f"everywhere); the cache under {root} is left incomplete. Fix: choose another site.")
    manifest["complete"] = True
    _write_json(mpath, manifest)
    return ActivationCache.open(root), False


def check_sites_cover(model: "Model", suite: "Suite", sites: Sequence[Site], seqs: Sequence[tuple[Any, Any]]) -> None:
    """Refuse, before anything is written, a site whose region or token no sequence of the cache has: a region
    name the suite does not define, a region number an item lacks, a token index beyond a sequence. (A region
    that exists but is empty in one condition, such as the cue, is fine: that sequence has no row for it.)"""
    lengths: dict[int, int] = {}
    for s in sites:
        p = s.position
        if isinstance(p, RegionPos):
            try:
                num = region_number(p.region, suite)
            except SuiteError as exc:
                raise ConfigError(f"site {s}: {exc}") from None
            for it, c in seqs:
                if num not in c.region_spans:
                    raise ConfigError(f"site {s}: item {it.number} condition {c.name!r} has no region {p.region!r} "
                                      f"(its regions are {', '.join(str(r.number) for r in c.regions)})")
        elif isinstance(p, TokenPos):
            for i, (it, c) in enumerate(seqs):
                if i not in lengths:
                    lengths[i] = len(tokenize_condition(model, c))
                n = lengths[i]
                if not -n <= p.index < n:
                    raise ConfigError(f"site {s}: item {it.number} condition {c.name!r} has only {n} tokens "
                                      f"(incl. BOS); token {p.index} is out of range")


def _shard_meta(model: "Model", suite: "Suite", sites: Sequence[Site], rows: dict[Site, Tensor],
                chunk: Sequence[tuple[Any, Any]], toks: Sequence[Any], first: int) -> dict[str, dict[str, list]]:
    """Row metadata of one shard, once per position (sites at the same position share it): item,
    condition, region, token index and text, and the sequence's index in the suite."""
    regions: dict[int, list[int]] = {}
    texts: dict[int, list[str]] = {}

    def region(i: int, t: int) -> int:
        if i not in regions:
            regions[i] = [region_of_token(toks[i], k) for k in range(len(toks[i].input_ids))]
        return regions[i][t]

    def text(i: int, t: int) -> str:
        if i not in texts:
            texts[i] = model.tokenizer.convert_ids_to_tokens(list(toks[i].input_ids))
        return texts[i][t]

    meta: dict[str, dict[str, list]] = {}
    for s in sites:
        k = _pos_key(s)
        if k in meta:
            continue
        pairs = rows[s].tolist()
        meta[k] = {
            "item": [chunk[i][0].key for i, _ in pairs],
            "condition": [chunk[i][1].name for i, _ in pairs],
            "region": [region(i, t) if t >= 0 else _mean_region(s, suite) for i, t in pairs],
            "token": [int(t) for _, t in pairs],
            "token_str": [text(i, t) if t >= 0 else "<mean>" for i, t in pairs],
            "sequence": [first + i for i, _ in pairs],
        }
    return meta


def _mean_region(site: Site, suite: "Suite") -> int:
    assert isinstance(site.position, RegionPos)
    return region_number(site.position.region, suite)


def parse_cache_sites(spec: str, model: "Model", suite: "Suite") -> list[Site]:
    """Sites of a cache spec; ``region=*`` means every region of the suite."""
    regions = sorted({r.number for it in suite.items for c in it.conditions for r in c.regions})
    return parse_sites(spec, model.n_layers, model.n_heads, regions=regions)
