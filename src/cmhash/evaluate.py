"""Evaluation: one run's train file -> its metrics file (:func:`evaluate_run`); rule ``evaluate`` does every run
of a training group in one job (:func:`evaluate_group`).

NumPy and h5py only (no torch): an evaluation job starts in a fraction of a second, and the metrics are
those of :mod:`cmhash.metrics` (layout of the output: docs/file_formats.md).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path
from typing import Any

import h5py

from . import metrics
from .store import atomic_h5, get_attr, joint_task_name, open_h5, set_attr, task_names

log = logging.getLogger(__name__)


def evaluate_run(
    train_path: str | Path, out_path: str | Path, evaluation: dict[str, Any], threads: int | None = None
) -> dict[str, float]:
    """Compute all retrieval metrics of a ``train.h5`` and write ``metrics.h5`` (codes and history copied).

    Queries are the test codes; the database is the run's ``/database`` codes when its dataset has a
    database split, else the test codes again. Task ``I2T`` ranks image queries in the text database, ``T2I``
    the reverse. With ``evaluation["fused_topk"] = k``, every joint code set the file declares (attribute
    ``joint_codes``, e.g. ``fused``: one code per pair) gets the task ``NAME``, its test codes ranked in its
    database codes; its ``map`` is MAP@k with queries without a relevant item in the top k counted as 0
    (the fusion-hashing protocol of NSRMH). ``threads``: worker threads of the metrics (default: up to 8 of the
    CPUs this process may use); the values do not depend on it. Returns ``map`` per task.
    """
    fused_topk = evaluation.get("fused_topk")
    with open_h5(train_path, "train") as src:
        attrs = {key: get_attr(src, key) for key in src.attrs if key not in ("schema", "package_version", "created")}
        mods = attrs["modalities"]
        joint = [str(name) for name in attrs.get("joint_codes", [])] if fused_topk else []
        retrieval_set = "database" if "database" in src else "test"
        db_group = "database" if retrieval_set == "database" else "codes"
        queries = [src[f"codes/{m}"][()] for m in mods]
        query_labels = src["codes/labels"][()]
        database = [src[f"{db_group}/{m}"][()] for m in mods]
        db_labels = src[f"{db_group}/labels"][()]
        maps: dict[str, float] = {}
        with atomic_h5(out_path, "metrics", attrs) as dst:
            for key in ("tie_order", "topk", "pn", "empty_queries"):
                set_attr(dst, key, evaluation[key])
            set_attr(dst, "fused_topk", fused_topk)
            set_attr(dst, "retrieval_set", retrieval_set)
            for group in ("codes", "database", *attrs.get("joint_codes", []), "history", "weights"):
                if group in src:
                    src.copy(src[group], dst, name=group)
            for task, (q, d) in zip(task_names(mods), ((0, 1), (1, 0))):
                res = metrics.evaluate_retrieval(
                    queries[q], database[d], query_labels, db_labels, topk=evaluation["topk"],
                    pn=evaluation["pn"], empty_queries=evaluation["empty_queries"], threads=threads,
                )
                _write_task(dst, task, res)
                maps[task] = res.map
            for name in joint:
                task = joint_task_name(name)
                codes = (src[f"{name}/test"][()], src[f"{name}/{retrieval_set}"][()], query_labels, db_labels)
                res = metrics.evaluate_retrieval(
                    *codes, topk=evaluation["topk"], pn=evaluation["pn"],
                    empty_queries=evaluation["empty_queries"], threads=threads,
                )
                # MAP@k always counts queries without a relevant item in the top k as 0; "zero" says so
                value = metrics.mean_average_precision(*codes, topk=int(fused_topk), empty_queries="zero")
                res = dataclasses.replace(res, map=value, map_at_k={**res.map_at_k, int(fused_topk): value})
                _write_task(dst, task, res).attrs["map_topk"] = int(fused_topk)
                maps[task] = res.map
    log.info("evaluated %s: %s", train_path, {k: round(v, 4) for k, v in maps.items()})
    return maps


def evaluate_group(
    train_dir: str | Path, out_dir: str | Path, members: list[str], evaluation: dict[str, Any],
    threads: int | None = None,
) -> dict[str, dict[str, float]]:
    """Rule ``evaluate``: every member of a training group's folder (``noise{r}_bits{b}.h5``) -> a metrics file of
    the same name in ``out_dir``, in one process. The files are written into ``<out_dir>.partial`` and the folder
    is renamed into place when every member is done, so an interrupted job leaves no folder a later run would
    trust. Returns ``map`` per task per member."""
    train_dir, out_dir = Path(train_dir), Path(out_dir)
    partial = out_dir.with_name(out_dir.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    maps = {member: evaluate_run(train_dir / member, partial / member, evaluation, threads=threads)
            for member in members}
    if out_dir.exists():
        shutil.rmtree(out_dir)
    partial.rename(out_dir)
    return maps


def _write_task(dst: h5py.File, task: str, res: metrics.RetrievalResult) -> h5py.Group:
    """``/metrics/<task>`` of a metrics file (layout: docs/file_formats.md)."""
    g = dst.create_group(f"metrics/{task}")
    g.attrs["map"] = res.map
    for k, value in res.map_at_k.items():
        g.attrs[f"map_at_{k}"] = value
    g.create_dataset("pr_precision", data=res.pr_precision)
    g.create_dataset("pr_recall", data=res.pr_recall)
    g.create_dataset("p_at_n", data=res.p_at_n)
    g.create_dataset("p_at_n_n", data=res.p_at_n_n)
    return g
