"""Who a lookup is for: the account itself, or an ISV sub-customer with its IsvCode. Validated before anything is spent."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from waba_lookup.errors import InvalidRequest

# CAMS space ids are digits in practice; letters, '-' and '_' are admitted for other id schemes.
CUST_SPACE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
ISV_CODE = re.compile(r"[A-Za-z0-9_.-]{1,128}")


@dataclass(frozen=True)
class Customer:
    """(CustSpaceId, IsvCode); both None means the caller's own account. The IsvCode never appears in repr."""

    cust_space_id: str | None = None
    isv_code: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, cust_space_id: Any, isv_code: Any) -> Customer:
        """Validate raw values (from a path, a header, a JSON body); None is absent, anything else must match.
        Raise InvalidRequest naming the field."""
        return cls(_checked("CustSpaceId", cust_space_id, CUST_SPACE_ID), _checked("IsvCode", isv_code, ISV_CODE))

    @classmethod
    def from_item(cls, item: Any) -> Customer:
        """Validate one `{"CustSpaceId"?, "IsvCode"?}` object (a queue message or a bulk refresh item): a field that
        is there must be a valid string (not null, not empty)."""
        if not isinstance(item, dict):
            raise InvalidRequest("each item must be a JSON object")
        unknown = sorted(set(item) - {"CustSpaceId", "IsvCode"})
        if unknown:
            raise InvalidRequest(f"unknown field(s): {', '.join(map(str, unknown))[:100]}")
        for name, value in item.items():
            if not isinstance(value, str):
                raise InvalidRequest(f"{name} must be a string")
        return cls.parse(item.get("CustSpaceId"), item.get("IsvCode"))

    def as_item(self) -> dict[str, str]:
        """The wire form, for a queue message."""
        return {k: v for k, v in (("CustSpaceId", self.cust_space_id), ("IsvCode", self.isv_code)) if v}


def _checked(name: str, value: Any, pattern: re.Pattern[str]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string")
    if not pattern.fullmatch(value):
        # the value itself is not echoed: an IsvCode is a credential
        raise InvalidRequest(f"{name} must be 1-{_max_len(pattern)} characters of {_charset(pattern)}")
    return value


def _max_len(pattern: re.Pattern[str]) -> str:
    return pattern.pattern.rsplit(",", 1)[1].rstrip("}")


def _charset(pattern: re.Pattern[str]) -> str:
    return pattern.pattern[: pattern.pattern.index("]") + 1]
