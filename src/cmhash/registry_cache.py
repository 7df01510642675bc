"""The method registry's hyperparameter defaults without importing torch (a cached view of the classes).

The Snakefile resolves every run of the config before the first job starts (:func:`cmhash.config.training_plan`),
and for that it needs each implementation's defaults and nothing else of a method. The methods are
``torch.nn.Module`` classes, so reading the defaults off the classes means importing torch (about 1.2 s, once per
``snakemake`` call, dry runs included). This module answers the same question from a cache instead.

* **The source of truth stays the classes** (``Method.defaults`` merged with each class's ``defaults``,
  :mod:`cmhash.methods`). When :mod:`cmhash.methods` is already imported (a training job, the tests, a method
  registered at run time) :func:`method_defaults` reads the live registry.
* Otherwise it reads ``methods-<key>.json`` in the cache folder, where ``<key>`` hashes every ``.py`` file of the
  installed ``cmhash`` package and the Python version: any edit of the package makes a new key, so a stale
  cache is never read. On a miss (the first call after an edit) it imports the methods, reads the classes and
  writes the file atomically; a cache folder that cannot be written only costs the import next time.
* The cache folder is ``$CMHASH_CACHE_DIR`` (``off`` disables the cache), else ``$XDG_CACHE_HOME/cmhash``,
  else ``~/.cache/cmhash``. It holds one small file (about 10 KB) per state of the package; deleting it is
  always safe.

Defaults are written only if JSON gives them back unchanged (same ``repr``: a tuple default would come back as a
list and is therefore not cached), so a cached answer equals the classes' answer value for value and type for
type; tests/test_registry_cache.py checks it, and that a warm cache resolves the shipped config without torch.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from .hparams import check_params
from .store import atomic_path

PACKAGE_ROOT = Path(__file__).resolve().parent
_CACHE_FORMAT = 1


def defaults_from_classes() -> dict[str, dict[str, Any]]:
    """impl -> its full defaults, read off the registered classes (imports :mod:`cmhash.methods`, hence torch)."""
    from .methods import REGISTRY, Method

    return {impl: {**Method.defaults, **cls.defaults} for impl, cls in sorted(REGISTRY.items())}


@functools.cache
def source_key() -> str:
    """Hash of every ``.py`` file of the package (path and bytes) and the Python version: the cache's key
    (computed once per process)."""
    digest = hashlib.sha256(f"{_CACHE_FORMAT} {sys.version_info[:2]}".encode())
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        digest.update(str(path.relative_to(PACKAGE_ROOT)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def cache_dir() -> Path | None:
    """Where the defaults are cached (module docstring), or ``None`` when ``CMHASH_CACHE_DIR`` is ``off`` (or
    empty)."""
    own = os.environ.get("CMHASH_CACHE_DIR")
    if own is not None:
        return None if own.strip().lower() in ("off", "") else Path(own)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "cmhash"


def method_defaults() -> dict[str, dict[str, Any]]:
    """impl -> its full defaults (base hyperparameters included): from the live registry when
    :mod:`cmhash.methods` is imported, else from the cache (module docstring). Treat the answer as read-only."""
    if "cmhash.methods" in sys.modules:
        return defaults_from_classes()
    return _cached_defaults(source_key())


@functools.cache
def _cached_defaults(key: str) -> dict[str, dict[str, Any]]:
    """The cache file's defaults under ``key``, or the classes' (then written to the cache); once per process."""
    folder = cache_dir()
    path = None if folder is None else folder / f"methods-{key[:32]}.json"
    defaults = _read_cache(path, key) if path is not None else None
    if defaults is None:
        defaults = defaults_from_classes()
        if path is not None:
            _write_cache(path, key, defaults)
    return defaults


def _read_cache(path: Path, key: str) -> dict[str, dict[str, Any]] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != key or not isinstance(data.get("defaults"), dict):
        return None
    return data["defaults"]


def _write_cache(path: Path, key: str, defaults: dict[str, dict[str, Any]]) -> None:
    """Write atomically; skip defaults JSON would change (a tuple, a non-string key) and any OS error."""
    text = json.dumps({"key": key, "defaults": defaults})  # insertion order kept: the classes' order
    if repr(json.loads(text)["defaults"]) != repr(defaults):
        return
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(text)
    except OSError:  # a folder that cannot be written: the next call reads the classes again
        pass


def resolve_params(impl: str, params: dict[str, Any], where: str = "params") -> dict[str, Any]:
    """Defaults of ``impl`` updated with ``params`` (:func:`check_params`), without importing torch when the
    cache is warm. An unknown ``impl`` raises ``KeyError`` listing the known ones."""
    defaults = method_defaults()
    if impl not in defaults:
        raise KeyError(f"unknown method implementation {impl!r}; known: {sorted(defaults)}")
    return check_params(impl, defaults[impl], params, where)
