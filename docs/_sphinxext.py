"""Hooks of the documentation build named in conf.py by their import path (Sphinx caches
its configuration with pickle, so the gallery's callables are given as strings)."""

import os


def reset_argv(gallery_conf, script_vars):
    """Command-line arguments of a gallery script: the examples draw their figure."""
    src = os.path.normpath(script_vars["src_file"])
    examples = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "examples"))
    return ["--plot"] if os.path.dirname(src) == examples else []


#: Docstrings written as aligned "name  description" tables rather than numpydoc sections
#: (fastgates/cells.py, being built on another branch): shown as a literal block until
#: they are converted.  Remove a name here once its docstring is numpydoc.
LITERAL_TABLES = {"fastgates.cells.Param", "fastgates.cells.OnnxLayout",
                  "fastgates.cells.CellDef"}


def literal_tables(app, what, name, obj, options, lines):
    """autodoc-process-docstring: keep the summary, show the rest as a literal block."""
    if name not in LITERAL_TABLES or not lines:
        return
    try:
        cut = lines.index("")
    except ValueError:
        return
    body = lines[cut + 1:]
    lines[cut + 1:] = ["::", ""] + ["    " + line if line else "" for line in body] + [""]


def setup(app):
    # before numpydoc (priority 500) so that it sees plain text
    app.connect("autodoc-process-docstring", literal_tables, priority=400)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
