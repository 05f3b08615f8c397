"""Build of the one compiled module, the tabulated rANS coder; everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "rinr_data.format._rans",
            sources=["rinr_data/format/_rans.c"],
            depends=["rinr_data/format/_rans_tables.h"],
            extra_compile_args=["-O3"],
        )
    ]
)
