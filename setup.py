"""Build of the one compiled module, the tabulated rANS coder; everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "rinr_data.format._rans",
            sources=["rinr_data/format/_rans.c"],
            depends=["rinr_data/format/_rans_tables.h"],
            # -fno-wrapv undoes Python's -fwrapv for this module: every signed sum in the coder is bounded far inside
            # int64 (checked inputs), and the wrapping semantics cost the decoder ~4%.
            extra_compile_args=["-O3", "-fno-wrapv"],
        )
    ]
)
