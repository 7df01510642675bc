"""Logging for workflow scripts: everything to the job's log file, and to stderr for the live view."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path


def setup_logging(log_path: str | None = None, level: int = logging.INFO) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True
    )


@contextlib.contextmanager
def logged_job(log_path: str, name: str) -> Iterator[logging.Logger]:
    """Run a report job's body with logging, stdout and stderr (warnings of matplotlib, pandas) all going to
    its log file; an exception is logged with its traceback and ends the job with exit status 1."""
    with open(log_path, "w") as log, contextlib.redirect_stderr(log), contextlib.redirect_stdout(log):
        logging.basicConfig(stream=log, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                            force=True)
        logger = logging.getLogger(f"cmhash.scripts.{name}")
        try:
            yield logger
        except Exception:
            logger.exception("%s failed", name)
            sys.exit(1)
        finally:
            logging.getLogger().handlers.clear()  # the log file closes with this block
