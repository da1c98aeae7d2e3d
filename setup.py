"""Build the compiled core of fastgates.

Environment switches:
  FASTGATES_NO_OPENMP=1   build without OpenMP (the kernels then run serially)
  FASTGATES_DEBUG=1       Cython bounds/wraparound checks on, -O0 -g (for debugging)
  FASTGATES_SANITIZE=1    -fsanitize=address,undefined (run with the ASan runtime preloaded)
  LIBOMP_PREFIX=/path     macOS: where libomp lives (default: Homebrew's prefixes)

What the build decided (compiler, flags, OpenMP) is written next to the extensions as
fastgates/_build_info.py, which ``fastgates.show_config()`` reports.
"""

import os
import pprint
import subprocess
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


# The instruction-set levels beyond generic, each one translation unit compiled under a
# target region (src_c/kernels_<level>.c), and a program that uses what that file uses.
ISA_LEVELS = {
    "avx2": ("src_c/kernels_avx2.c", textwrap.dedent("""
        #pragma GCC target("avx2,fma")
        #include <immintrin.h>
        __m256 f(__m256 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(a, b, c); }
        int main(void) { return 0; }
    """)),
    "avx512": ("src_c/kernels_avx512.c", textwrap.dedent("""
        #pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")
        #include <immintrin.h>
        __m512 f(const float *p) { return _mm512_maskz_loadu_ps((__mmask16)3, p); }
        void g(float *p, __m512d v) { _mm512_mask_storeu_pd((double *)p, (__mmask8)1, v); }
        int main(void) { return 0; }
    """)),
}

OPENMP_PROBE = textwrap.dedent("""
    #include <omp.h>
    int main(void) { int n = 0;
    #pragma omp parallel reduction(+:n)
      n += 1;
      return n > 0 ? 0 : 1; }
""")


def _libomp_prefix():
    """macOS: the libomp install to compile against (Apple clang ships no omp.h)."""
    for prefix in (os.environ.get("LIBOMP_PREFIX"), "/opt/homebrew/opt/libomp", "/usr/local/opt/libomp"):
        if prefix and os.path.exists(os.path.join(prefix, "include", "omp.h")):
            return prefix
    return None


def _compiler_version(compiler):
    """First line of ``<cc> --version`` (unix compilers); the compiler type otherwise."""
    exe = getattr(compiler, "compiler_so", None) or getattr(compiler, "compiler", None)
    if not exe:
        return compiler.compiler_type
    try:
        out = subprocess.run([exe[0], "--version"], capture_output=True, text=True, timeout=30)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except Exception:
        return exe[0]


# The oldest NumPy C API the extensions may use.  NumPy 2 headers build binaries that
# import on every NumPy from this release on; keep it equal to the runtime floor in
# pyproject.toml, which CI tests against the oldest NumPy it names.
NPY_TARGET = "NPY_1_23_API_VERSION"


class BuildExt(build_ext):
    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:   # the three extensions compile side by side
            self.parallel = os.cpu_count() or 1

    def build_extensions(self):
        ctype = self.compiler.compiler_type
        if ctype == "msvc":
            # /std:c11 for _Pragma in the OpenMP macros; MSVC's /openmp is OpenMP 2.0 (vcomp)
            opt, omp_c, omp_l = ["/O2", "/fp:precise", "/std:c11"], ["/openmp"], []
        else:
            # -g0 (after Python's own -g): no debug info in release wheels, a tenth of the size
            if _flag("FASTGATES_DEBUG"):
                opt = ["-O0", "-g"]
            else:
                opt = ["-O3"] + ([] if _flag("FASTGATES_SANITIZE") else ["-g0"])
            # no -ffast-math: the kernels need IEEE NaN/Inf propagation
            opt += ["-fno-math-errno", "-ffp-contract=fast", "-Wno-unused-function", "-Wno-psabi"]
            if sys.platform == "darwin":
                omp_c, omp_l = ["-Xpreprocessor", "-fopenmp"], ["-lomp"]
                prefix = _libomp_prefix()
                if prefix:
                    omp_c = omp_c + ["-I" + os.path.join(prefix, "include")]
                    omp_l = ["-L" + os.path.join(prefix, "lib"), "-Wl,-rpath," + os.path.join(prefix, "lib")] + omp_l
            else:
                omp_c, omp_l = ["-fopenmp"], ["-fopenmp"]
        use_omp = not _flag("FASTGATES_NO_OPENMP")
        if not use_omp:
            serial_reason = "FASTGATES_NO_OPENMP is set"
        elif not _compiler_accepts(self.compiler, omp_c + omp_l, OPENMP_PROBE):
            serial_reason = "the C compiler cannot compile and link OpenMP code"
            use_omp = False
        else:
            serial_reason = ""
        if serial_reason:
            # pip shows build output only with -v; show_config() reports it in any case
            warnings.warn(f"fastgates: {serial_reason}; building the kernels SERIAL (one thread). "
                          "For multi-threaded kernels install an OpenMP runtime (GCC: libgomp; "
                          "macOS: brew install libomp) and unset FASTGATES_NO_OPENMP.", stacklevel=1)
        san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"] if _flag("FASTGATES_SANITIZE") else []
        levels = self._isa_levels(ctype)
        for ext in self.extensions:
            if ext.name == "fastgates._recurrence":
                ext.sources += [ISA_LEVELS[name][0] for name in levels]
                ext.define_macros = list(ext.define_macros or []) + [
                    (f"FG_BUILD_{name.upper()}", "1") for name in levels]
            ext.extra_compile_args = opt + san + (omp_c if use_omp else [])
            ext.extra_link_args = san + (omp_l if use_omp else [])
            ext.define_macros = list(ext.define_macros or []) + [
                ("FASTGATES_OPENMP", "1" if use_omp else "0"),
                ("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION"),
                ("NPY_TARGET_VERSION", NPY_TARGET)]
        self._info = self._build_info(opt + san, omp_c, omp_l, use_omp, serial_reason)
        self._info["isa_levels"] = " ".join(["generic"] + levels)
        super().build_extensions()
        self._write_build_info()

    def _isa_levels(self, ctype):
        """The levels this compiler can build (x86-64 GCC/Clang); the others are left out
        with a message, and the kernels then never dispatch to them."""
        import platform

        if ctype == "msvc" or platform.machine().lower() not in ("x86_64", "amd64", "i686", "i386"):
            print("fastgates: building the generic kernels only (instruction-set levels avx2/"
                  "avx512 need GCC or Clang on x86-64)")
            return []
        levels = []
        for name, (_, probe) in ISA_LEVELS.items():
            if _compiler_accepts(self.compiler, [], probe):
                levels.append(name)
            else:
                warnings.warn(f"fastgates: the C compiler cannot build the {name} kernels; "
                              f"that level is left out (the kernels will not use it)", stacklevel=1)
        print(f"fastgates: kernels for the instruction-set levels generic {' '.join(levels)}")
        return levels

    def _build_info(self, flags, omp_c, omp_l, use_omp, serial_reason):
        import Cython
        import numpy

        cc = getattr(self.compiler, "compiler_so", None)
        return {
            "compiler": _compiler_version(self.compiler),
            "compiler_type": self.compiler.compiler_type,
            "compiler_command": " ".join(cc) if cc else self.compiler.compiler_type,
            "flags": " ".join(flags),
            "openmp": use_omp,
            "openmp_flags": f"compile {' '.join(omp_c)}; link {' '.join(omp_l) or '-'}" if use_omp else "",
            "serial_reason": serial_reason,
            "debug": _flag("FASTGATES_DEBUG"),
            "sanitize": _flag("FASTGATES_SANITIZE"),
            "cython": Cython.__version__,
            "numpy_build": numpy.__version__,
            "numpy_target_api": NPY_TARGET,
            "python_build": sys.version.split()[0],
            "platform": sys.platform,
        }

    def _info_files(self):
        """(where build_ext writes _build_info.py, its in-place copy in the source tree)."""
        package_dir = self.get_finalized_command("build_py").get_package_dir("fastgates")
        name = "_build_info.py"
        return os.path.join(self.build_lib, "fastgates", name), os.path.join(package_dir, name)

    def _write_build_info(self):
        path = self._info_files()[0]
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write('"""Written by setup.py at build time: how the compiled core was built."""\n\n')
            f.write("BUILD_INFO = " + pprint.pformat(self._info, sort_dicts=False) + "\n")

    # setuptools builds into build_lib and copies to the source tree for --inplace and
    # editable installs; the build info follows the extensions on all three routes.
    def copy_extensions_to_source(self):
        super().copy_extensions_to_source()
        self.copy_file(*self._info_files(), level=self.verbose)

    def _get_output_mapping(self):
        yield from super()._get_output_mapping()
        if self.inplace:
            yield self._info_files()

    def get_outputs(self):
        outputs = super().get_outputs()
        return outputs if self.inplace else outputs + [self._info_files()[0]]


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

    depends = [os.path.join(d, f) for d in ("src_c", "src_c/cells") for f in sorted(os.listdir(d))
               if f.endswith((".h", ".c"))] + ["fastgates/_sampling.pxi"]
    common = dict(include_dirs=["src_c", numpy.get_include()], depends=depends)
    exts = [
        Extension("fastgates._blas", ["fastgates/_blas.pyx"], **common),
        # the one compiled core: the time loops, generation, and (added by BuildExt) the
        # kernels of every instruction-set level the compiler can build
        Extension("fastgates._recurrence", ["fastgates/_recurrence.pyx", "src_c/dispatch.c",
                                            "src_c/kernels_generic.c"], **common),
    ]
    return cythonize(exts, compiler_directives=directives, compile_time_env={"FASTGATES_DEBUG": debug})


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
