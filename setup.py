"""Build the compiled core of fastgates.

Environment switches:
  FASTGATES_NO_OPENMP=1   build without OpenMP (the kernels then run serially)
  FASTGATES_DEBUG=1       Cython bounds/wraparound checks on, -O0 -g (for debugging)
  FASTGATES_SANITIZE=1    -fsanitize=address,undefined (run with the ASan runtime preloaded)
"""

import os
import sys
import tempfile
import textwrap
import warnings

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _flag(name):
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def _compiler_accepts(compiler, flags, source):
    """Compile and link a tiny program with ``flags``; True when it works."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(source)
        try:
            objs = compiler.compile([src], output_dir=tmp, extra_postargs=flags)
            compiler.link_executable(objs, os.path.join(tmp, "probe"), extra_postargs=flags)
        except Exception:
            return False
    return True


OPENMP_PROBE = textwrap.dedent("""
    #include <omp.h>
    int main(void) { int n = 0;
    #pragma omp parallel reduction(+:n)
      n += 1;
      return n > 0 ? 0 : 1; }
""")


class BuildExt(build_ext):
    def build_extensions(self):
        ctype = self.compiler.compiler_type
        if ctype == "msvc":
            opt, omp_c, omp_l = ["/O2", "/fp:precise"], ["/openmp"], []
        else:
            opt = ["-O0", "-g"] if _flag("FASTGATES_DEBUG") else ["-O3"]
            # no -ffast-math: the kernels need IEEE NaN/Inf propagation
            opt += ["-fno-math-errno", "-ffp-contract=fast", "-Wno-unused-function", "-Wno-psabi"]
            if sys.platform == "darwin":
                omp_c, omp_l = ["-Xpreprocessor", "-fopenmp"], ["-lomp"]
            else:
                omp_c, omp_l = ["-fopenmp"], ["-fopenmp"]
        use_omp = not _flag("FASTGATES_NO_OPENMP")
        if use_omp and not _compiler_accepts(self.compiler, omp_c + omp_l, OPENMP_PROBE):
            warnings.warn("fastgates: the C compiler does not support OpenMP; building the kernels "
                          "SERIAL (one thread). Install an OpenMP runtime (libgomp/libomp) for "
                          "multi-threaded kernels.")
            use_omp = False
        elif not use_omp:
            print("fastgates: FASTGATES_NO_OPENMP set, building the kernels serial")
        san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"] if _flag("FASTGATES_SANITIZE") else []
        for ext in self.extensions:
            ext.extra_compile_args = opt + san + (omp_c if use_omp else [])
            ext.extra_link_args = san + (omp_l if use_omp else [])
            ext.define_macros = list(ext.define_macros or []) + [
                ("FASTGATES_OPENMP", "1" if use_omp else "0"),
                ("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")]
        super().build_extensions()


def extensions():
    from Cython.Build import cythonize

    debug = _flag("FASTGATES_DEBUG")
    directives = {
        "language_level": 3,
        "boundscheck": debug,
        "wraparound": debug,
        "initializedcheck": debug,
        "cdivision": not debug,
        "embedsignature": True,
    }
    import numpy

    common = dict(include_dirs=["src_c", numpy.get_include()], depends=[os.path.join("src_c", f) for f in os.listdir("src_c")])
    exts = [
        Extension("fastgates._blas", ["fastgates/_blas.pyx"], **common),
        Extension("fastgates._recurrence", ["fastgates/_recurrence.pyx", "src_c/recurrence.c"], **common),
        Extension("fastgates.lm._sampling", ["fastgates/lm/_sampling.pyx", "src_c/recurrence.c"], **common),
    ]
    return cythonize(exts, compiler_directives=directives, compile_time_env={"FASTGATES_DEBUG": debug})


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
