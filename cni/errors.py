"""CNI error codes and the error type every verb raises.

CNI spec 1.1.0, "Error" section: a failing plugin prints
``{"cniVersion", "code", "msg", "details"}`` on stdout and exits non-zero.
Codes 0-99 are reserved for the well-known errors below; 100+ are this
plugin's own. 999 is libcni's ``ErrInternal``, used here for unexpected
exceptions so a runtime shows them as internal errors.
"""

from __future__ import annotations

from typing import Any, Final

# Well-known error codes (CNI spec 1.1.0, "Error" section).
INCOMPATIBLE_VERSION: Final = 1
UNSUPPORTED_FIELD: Final = 2
CONTAINER_UNKNOWN: Final = 3
INVALID_ENV: Final = 4
IO_FAILURE: Final = 5
DECODE_FAILURE: Final = 6
INVALID_CONFIG: Final = 7
TRY_AGAIN_LATER: Final = 11
PLUGIN_NOT_AVAILABLE: Final = 50
LIMITED_CONNECTIVITY: Final = 51

# netvisor-cni's own codes (100+).
INTERFACE_EXISTS: Final = 100
NETLINK_FAILURE: Final = 101
IPAM_FAILURE: Final = 102
STATE_FAILURE: Final = 103
CHECK_FAILED: Final = 104
INTERNAL: Final = 999


class CNIError(Exception):
    """An error reported to the runtime as the spec's error JSON."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_json(self, cni_version: str) -> dict[str, Any]:
        """The error object for stdout (``details`` omitted when empty)."""
        out: dict[str, Any] = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out

    def __repr__(self) -> str:
        return f"CNIError({self.code}, {self.msg!r}, {self.details!r})"
