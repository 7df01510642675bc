"""cmhash.registry_cache: the methods' defaults without torch (the Snakefile's start-up), equal to the classes'."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cmhash import hparams, registry_cache
from cmhash.config import load_config, training_plan
from cmhash.methods import REGISTRY, Method, resolve_params

REPO = Path(__file__).resolve().parents[1]

# A fresh interpreter (this one has imported the methods, so it always reads the live registry): the
# cache's answer, whether torch got imported, and the shipped config's plan as (run, hash, group).
PROBE = """
import json, sys
from cmhash import registry_cache
from cmhash.config import load_config, training_plan
defaults = registry_cache.method_defaults()
plan = training_plan(load_config(sys.argv[1]))
print(json.dumps({"repr": repr(defaults), "torch": "torch" in sys.modules,
                  "plan": sorted([list(k), r.config_hash, r.group] for k, r in plan.runs.items())}))
"""


def probe(cache_dir) -> dict:
    env = {**os.environ, "CMHASH_CACHE_DIR": str(cache_dir)}
    out = subprocess.run([sys.executable, "-c", PROBE, str(REPO / "config" / "config.yaml")], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def test_check_params_hand_case():
    # defaults {epochs: 150, lr: 1e-4, hidden: [8]}; an int where a float is expected becomes a float, a list is
    # copied, an unknown key or an out-of-range shared value names where it came from
    defaults = {"epochs": 150, "lr": 1e-4, "hidden": [8]}
    out = hparams.check_params("toy", defaults, {"lr": 1, "hidden": [4, 2]}, where="methods.T.params")
    assert out == {"epochs": 150, "lr": 1.0, "hidden": [4, 2]} and isinstance(out["lr"], float)
    with pytest.raises(ValueError, match=r"methods\.T\.params\.gamma: unknown hyperparameter"):
        hparams.check_params("toy", defaults, {"gamma": 1.0}, where="methods.T.params")
    with pytest.raises(ValueError, match=r"params\.epochs: must be >= 1"):
        hparams.check_params("toy", defaults, {"epochs": 0})
    with pytest.raises(ValueError, match=r"params\.hidden: expected a list of integers"):
        hparams.check_params("toy", defaults, {"hidden": [1.5]})


def test_live_registry_is_read_when_the_methods_are_imported():
    expected = {impl: {**Method.defaults, **cls.defaults} for impl, cls in REGISTRY.items()}
    assert registry_cache.method_defaults() == expected
    for impl in REGISTRY:  # the same answer as the methods' own resolve_params
        assert registry_cache.resolve_params(impl, {"epochs": 3}) == resolve_params(impl, {"epochs": 3})
    with pytest.raises(KeyError, match="unknown method implementation 'nope'"):
        registry_cache.resolve_params("nope", {})


def test_cold_then_warm_cache_equals_the_classes_and_skips_torch(tmp_path):
    cold = probe(tmp_path)
    assert cold["torch"], "a cold cache reads the classes (importing torch)"
    files = list(tmp_path.glob("methods-*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["key"] == registry_cache.source_key()
    warm = probe(tmp_path)
    assert not warm["torch"], "a warm cache must resolve the config without importing torch"
    classes = {impl: {**Method.defaults, **cls.defaults} for impl, cls in sorted(REGISTRY.items())}
    assert warm["repr"] == cold["repr"] == repr(classes)  # values, types and key order
    here = training_plan(load_config(REPO / "config" / "config.yaml"))
    assert warm["plan"] == cold["plan"] == sorted([list(k), r.config_hash, r.group] for k, r in here.runs.items())


def test_cache_off_never_writes(tmp_path, monkeypatch):
    monkeypatch.setenv("CMHASH_CACHE_DIR", "off")
    assert registry_cache.cache_dir() is None
    monkeypatch.setenv("CMHASH_CACHE_DIR", str(tmp_path))
    assert registry_cache.cache_dir() == tmp_path
    monkeypatch.delenv("CMHASH_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert registry_cache.cache_dir() == tmp_path / "xdg" / "cmhash"


def test_stale_corrupt_and_foreign_files_are_ignored(tmp_path):
    path = tmp_path / "methods-x.json"
    good = {"rshnl": {"epochs": 150, "hidden": [4096]}}
    registry_cache._write_cache(path, "k1", good)
    assert registry_cache._read_cache(path, "k1") == good
    assert registry_cache._read_cache(path, "k2") is None  # another package version's key
    path.write_text('{"key": "k1", "defaults": {"rshnl": {"epo')  # a torn or hand-edited file
    assert registry_cache._read_cache(path, "k1") is None
    path.write_text('["not", "a", "defaults", "file"]')
    assert registry_cache._read_cache(path, "k1") is None
    assert registry_cache._read_cache(tmp_path / "absent.json", "k1") is None


def test_defaults_json_would_change_are_not_cached(tmp_path):
    path = tmp_path / "methods-t.json"
    registry_cache._write_cache(path, "k", {"toy": {"sizes": (1, 2)}})  # a tuple would come back as a list
    assert not path.exists()
    registry_cache._write_cache(path, "k", {"toy": {1: 2.0}})  # a non-string key would come back as "1"
    assert not path.exists()


def test_unwritable_cache_folder_is_not_an_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    registry_cache._write_cache(blocker / "sub" / "methods-k.json", "k", {"toy": {"a": 1}})  # parent is a file
    assert list(tmp_path.iterdir()) == [blocker]


def test_source_key_follows_every_package_file():
    files = sorted(p.relative_to(registry_cache.PACKAGE_ROOT) for p in registry_cache.PACKAGE_ROOT.rglob("*.py"))
    assert Path("methods/rshnl.py") in files and Path("config.py") in files and Path("registry_cache.py") in files
    assert len(registry_cache.source_key()) == 64


def test_every_shipped_method_gets_the_cached_path(tmp_path):
    # a default JSON would change (tuple, None-typed, non-string key) makes the whole catalogue uncacheable
    defaults = registry_cache.defaults_from_classes()
    path = tmp_path / "methods-all.json"
    registry_cache._write_cache(path, "k", defaults)
    assert path.exists(), "a method's defaults do not survive JSON; use plain numbers, strings, bools, int lists"
    assert repr(registry_cache._read_cache(path, "k")) == repr(defaults)
