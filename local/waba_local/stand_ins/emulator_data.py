"""The WABAs the CAMS emulator knows: the account's own, seeded ISV sub-customers, and generated ones.

Every Data dict carries "ThroughputTier", a field the API reference does not list, so tests can check that
unknown fields survive the whole path.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import re
from typing import Any

from waba_local.stand_ins.emulator_protocol import CamsError

Customers = dict[str | None, tuple[str | None, dict[str, Any]]]

# A CustSpaceId of this shape that is not seeded gets a WABA generated from it, so benchmarks can use many.
GENERATED_CUST_SPACE_ID = re.compile(r"^cs-[A-Za-z0-9-]{1,40}$")

OWN_WABA: dict[str, Any] = {
    "Id": "104839274658213",
    "Name": "Nusantara Retail Official",
    "BusinessId": "389104756201937",
    "BusinessName": "PT Nusantara Retail Indonesia",
    "Currency": "USD",
    "AccountReviewStatus": "APPROVED",
    "MessageTemplateNamespace": "93e6b26e_8a67_4163_a093_ebfe645a66b0",
    "PrimaryBusinessLocation": "ID",
    "MarketingMessageLiteStatus": "Y",
    "IsOnBizApp": "N",
    "AuthInternationalRateEligibility": {"start_time": 1721952000, "exception_countries": ["IN"]},
    "ThroughputTier": "STANDARD",
}

# CustSpaceId -> (IsvCode, Data), shaped like the reference's examples ("293483****49493", "aksik93kdkkxmwol9****").
SEEDED_CUSTOMERS: Customers = {
    "293483100049493": (
        "aksik93kdkkxmwol9a7Qz",
        {
            "Id": "203939883939931",
            "Name": "Alibaba",
            "BusinessId": "192939881047",
            "BusinessName": "Alibaba",
            "Currency": "USD",
            "AccountReviewStatus": "APPROVED",
            "MessageTemplateNamespace": "5f2c7d1a_0b64_4e2b_9a41_7c3e2f8d6b10",
            "PrimaryBusinessLocation": '"start_time":1721952000',
            "MarketingMessageLiteStatus": "Y",
            "IsOnBizApp": "N",
            "AuthInternationalRateEligibility": {"test": "test", "test2": 1},
            "ThroughputTier": "HIGH",
        },
    ),
    "293483200078121": (
        "kq81mzp02xwe5vbn3Hd4",
        {
            "Id": "118273645509182",
            "Name": "Kopi Senja",
            "BusinessId": "740192836455",
            "BusinessName": "CV Kopi Senja Bandung",
            "Currency": "IDR",
            "AccountReviewStatus": "PENDING",
            "MessageTemplateNamespace": "a1d0e8c4_73b2_41f9_8e06_2b5d9c7f3a41",
            "PrimaryBusinessLocation": "ID",
            "MarketingMessageLiteStatus": "N",
            "IsOnBizApp": "Y",
            "AuthInternationalRateEligibility": {},
            "ThroughputTier": "STANDARD",
        },
    ),
    "293483300011275": (
        "zt4c9wq7lm2na0rx8Ue1",
        {
            "Id": "176502938417263",
            "Name": "Lion City Travel",
            "BusinessId": "551028374619",
            "BusinessName": "Lion City Travel Pte. Ltd.",
            "Currency": "SGD",
            "AccountReviewStatus": "REJECTED",
            "MessageTemplateNamespace": "c7e41b93_5d08_4a6f_b2c1_9e0f83d2a657",
            "PrimaryBusinessLocation": "SG",
            "MarketingMessageLiteStatus": "N",
            "IsOnBizApp": "N",
            "AuthInternationalRateEligibility": {"start_time": 1735689600, "exception_countries": []},
            "ThroughputTier": "STANDARD",
        },
    ),
    "293483400066390": (
        "pd5h2ks9ye7ub4wf1Rn6",
        {
            "Id": "190384756120394",
            "Name": "Saigon Street Food",
            "BusinessId": "662019384756",
            "BusinessName": "Saigon Street Food JSC",
            "Currency": "USD",
            "AccountReviewStatus": "DISABLED",
            "MessageTemplateNamespace": "0e9b7a26_c4f1_4d83_a5e2_61b8f0d93c74",
            "PrimaryBusinessLocation": "VN",
            "MarketingMessageLiteStatus": "N",
            "IsOnBizApp": "N",
            "AuthInternationalRateEligibility": {"start_time": 1721952000, "exception_countries": ["VN", "TH"]},
            "ThroughputTier": "LOW",
        },
    ),
}


def expected_isv_code(cust_space_id: str) -> str:
    """The IsvCode the emulator accepts for a generated (cs-…) customer."""
    return f"isv-{cust_space_id}"


def generated_waba(cust_space_id: str) -> dict[str, Any]:
    """A WABA derived from the id alone, so every run and every emulator process agree on it."""
    digest = hashlib.sha256(cust_space_id.encode()).hexdigest()
    digits = str(int(digest, 16))
    return {
        "Id": "1" + digits[:14],
        "Name": f"Generated {cust_space_id}",
        "BusinessId": "3" + digits[14:25],
        "BusinessName": f"Generated Business {cust_space_id}",
        "Currency": "USD",
        "AccountReviewStatus": "APPROVED",
        "MessageTemplateNamespace": "_".join((digest[:8], digest[8:12], digest[12:16], digest[16:20], digest[20:32])),
        "PrimaryBusinessLocation": "SG",
        "MarketingMessageLiteStatus": "Y" if int(digest[32], 16) % 2 else "N",
        "IsOnBizApp": "N",
        "AuthInternationalRateEligibility": {"start_time": 1721952000, "exception_countries": []},
        "ThroughputTier": "STANDARD",
    }


class WabaDirectory:
    """Answers "which WABA is bound to this customer", with CAMS's permission errors."""

    def __init__(self, customers: Customers | None = None) -> None:
        seeded = copy.deepcopy(SEEDED_CUSTOMERS if customers is None else customers)
        self._own = seeded.pop(None, (None, copy.deepcopy(OWN_WABA)))[1]
        self._customers = seeded

    def lookup(self, cust_space_id: str | None, isv_code: str | None) -> dict[str, Any]:
        """A fresh copy of the Data dict; raises CamsError when the caller may not see it."""
        if not cust_space_id:
            return copy.deepcopy(self._own)
        if cust_space_id in self._customers:
            expected, data = self._customers[cust_space_id]
        elif GENERATED_CUST_SPACE_ID.match(cust_space_id):
            expected, data = expected_isv_code(cust_space_id), generated_waba(cust_space_id)
        else:
            raise CamsError("Unknown.ResourceOwnerId")
        # The IsvCode is a credential: compare in constant time.
        if expected is None or not hmac.compare_digest((isv_code or "").encode(), expected.encode()):
            raise CamsError("Ram.PermissionDeny")
        return copy.deepcopy(data)
