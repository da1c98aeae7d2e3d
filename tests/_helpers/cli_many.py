"""Run several ``fastgates-lm`` command lines in one child process (cheaper than one
process each): reads a JSON list of argv lists on stdin, prints a JSON list of
{"code", "stderr", "traceback"} — ``traceback`` is set when main() let an exception out.
"""

import contextlib
import io
import json
import sys
import traceback

from fastgates.lm import cli


def run(argv):
    err, out = io.StringIO(), io.StringIO()
    code, tb = None, None
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = cli.main(argv)
        except SystemExit as exc:
            code = exc.code
        except BaseException:   # what a user would see as a traceback
            tb = traceback.format_exc()
    return {"code": code, "stderr": err.getvalue(), "traceback": tb}


if __name__ == "__main__":
    print(json.dumps([run(argv) for argv in json.load(sys.stdin)]))
