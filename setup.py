"""Build the Cython kernels (cext/); everything else is declared in pyproject.toml."""

from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = [
    Extension("herofossil.cext._delta", ["cext/_delta.pyx"]),
    Extension("herofossil.cext._gittree", ["cext/_gittree.pyx"]),
    Extension("herofossil.cext._manifest", ["cext/_manifest.pyx"]),
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False},
    ),
)
