"""Build logic only (metadata is in pyproject.toml).

- Copies grammar/pdl.lark into the built package, so an installed wheel carries the grammar.
- Cythonizes the extension modules (``pdp/**/*.pyx``) unless PDP_PUREPYTHON=1 or the
  interpreter is not CPython; a failed extension build falls back to pure Python unless
  PDP_REQUIRE_EXTENSION=1 (CI), where it is an error.
- Embeds in each build the sha256 of the ``.pyx`` it is built from (the C macro
  PDP_SOURCE_DIGEST, the module's ``SOURCE_DIGEST``): ``pdp/extension.py`` does not use a
  build whose ``.pyx`` has changed since.
"""

import hashlib
import os
import platform
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent
GRAMMAR = HERE / "grammar" / "pdl.lark"
REQUIRE_EXTENSION = os.environ.get("PDP_REQUIRE_EXTENSION") == "1"


class BuildPyWithGrammar(build_py):
    def run(self):
        super().run()
        target = Path(self.build_lib) / "pdp" / "pdl.lark"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(GRAMMAR, target)


class OptionalBuildExt(build_ext):
    def run(self):
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any compiler failure means "use pure Python"
            if REQUIRE_EXTENSION:
                raise
            print(f"warning: building the compiled evaluator failed ({exc}); using pure Python")

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            if REQUIRE_EXTENSION:
                raise
            print(f"warning: building {ext.name} failed ({exc}); using pure Python")


def extensions():
    if os.environ.get("PDP_PUREPYTHON") == "1" or platform.python_implementation() != "CPython":
        return []
    sources = sorted(str(p.relative_to(HERE)) for p in (HERE / "pdp").rglob("*.pyx"))
    if not sources:
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        if REQUIRE_EXTENSION:
            raise
        # Said aloud: in an editable install an extension built earlier would stay in place,
        # stale, and be imported as if it were current.
        print("warning: Cython is not installed: the compiled evaluator is not built (pip install Cython)")
        return []
    try:
        return [with_source_digest(ext) for ext in cythonize(sources, language_level=3)]
    except Exception as exc:  # noqa: BLE001 - a Cython error means "use pure Python", unless required
        if REQUIRE_EXTENSION:
            raise
        print(f"warning: cythonizing failed ({exc}); using pure Python")
        return []


def with_source_digest(ext):
    pyx = HERE / (ext.name.replace(".", "/") + ".pyx")
    ext.define_macros.append(("PDP_SOURCE_DIGEST", '"%s"' % hashlib.sha256(pyx.read_bytes()).hexdigest()))
    return ext


setup(ext_modules=extensions(), cmdclass={"build_py": BuildPyWithGrammar, "build_ext": OptionalBuildExt})
