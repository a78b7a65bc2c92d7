"""Build hook: the optional cffi C checksum (netvisor/tcpip/wire/_checksum_build.py).

Project metadata lives in pyproject.toml; this file only adds the cffi
extension. Without a C compiler (or if the compile fails) the install still
succeeds and netvisor uses the pure-Python checksum.
"""

from __future__ import annotations

import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """build_ext that warns instead of failing: the C checksum is an optimisation."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any compiler/platform failure
            print(f"netvisor: C checksum not built ({exc}); using pure Python",
                  file=sys.stderr)

    def build_extension(self, ext) -> None:  # type: ignore[no-untyped-def]
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            print(f"netvisor: extension {ext.name} not built ({exc}); using pure Python",
                  file=sys.stderr)


setup(
    cffi_modules=["netvisor/tcpip/wire/_checksum_build.py:ffibuilder"],
    cmdclass={"build_ext": OptionalBuildExt},
)
