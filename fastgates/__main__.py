"""``python -m fastgates --info``: the build and runtime report (``fastgates.show_config()``)."""

from __future__ import annotations

import argparse
import json
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastgates",
                                     description="fastgates: fast CPU kernels for RNN, GRU and LSTM.")
    parser.add_argument("--info", action="store_true",
                        help="print the version, build (compiler, flags, OpenMP), SIMD level, "
                             "OpenMP runtime, BLAS and thread counts")
    parser.add_argument("--json", action="store_true", help="with --info: print it as JSON")
    args = parser.parse_args(argv)
    if args.json and not args.info:
        parser.error("--json goes with --info")
    if not args.info:
        parser.print_help()
        return 0

    import fastgates

    if args.json:
        print(json.dumps(fastgates.show_config(mode="dicts"), indent=2, default=str))
    else:
        fastgates.show_config()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:     # `python -m fastgates --info | head -1`: the reader left early
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
