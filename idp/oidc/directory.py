"""What the provider needs from the identity registry: look-ups and claims.

The look-ups are the registry's own read side (:mod:`idp.login_directory`, one or two indexed
queries each); this adds what is the provider's: the database, codec and pairwise key it works
with, and the pairwise ``sub``.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from govtrust.db import Database
from idp import login_directory
from idp.login_directory import ActingCandidate, IdentityInfo
from idp.pii import PiiCodec

__all__ = ["ActingCandidate", "IdentityInfo", "RegistryDirectory"]


class RegistryDirectory:
    """Registry look-ups for logins, claims and the gRPC token resolver."""

    def __init__(self, db: Database, codec: PiiCodec, pairwise_key: bytes) -> None:
        self.db = db
        self.codec = codec
        self.pairwise_key = pairwise_key

    def identity(self, identity_id: str) -> IdentityInfo | None:
        """One identity's summary, or None."""
        return login_directory.identity(self.db, identity_id)

    def citizen_by_id_number(self, number: str) -> str | None:
        """The citizen registered with this resident ID number (via its blind index)."""
        return login_directory.citizen_by_id_number(self.db, self.codec, number)

    def legal_person_by_uscc(self, uscc: str) -> str | None:
        """The legal person registered with this USCC."""
        return login_directory.legal_person_by_uscc(self.db, uscc)

    def acting_candidates(self, legal_person_id: str) -> list[ActingCandidate]:
        """The legal representative and every citizen with a current agent grant."""
        return login_directory.acting_candidates(self.db, legal_person_id)

    def represented_by(self, citizen_id: str) -> list[str]:
        """The legal persons a citizen represents or is a current agent of."""
        return login_directory.represented_by(self.db, citizen_id)

    def staff_roles(self, identity_id: str) -> frozenset[str]:
        """A staff member's govtrust roles (empty for anyone else)."""
        return login_directory.staff_roles(self.db, identity_id)

    def subject_for(self, identity_id: str, *, pairwise: bool, sector: str) -> str:
        """``sub``: the registry id, or a pairwise HMAC of (sector, id) for pairwise clients."""
        if not pairwise:
            return identity_id
        digest = hmac.new(
            self.pairwise_key, f"{sector}\x00{identity_id}".encode(), hashlib.sha256
        ).hexdigest()
        return f"pw_{digest[:40]}"

    def claims(self, identity_id: str, scopes: frozenset[str], **options: Any) -> dict[str, Any]:
        """Standard and govtrust claims for ``scopes`` (OIDC Core §5.4); ``options`` as
        :func:`idp.login_directory.claims` takes them (acting person, identity allowed, system)."""
        return login_directory.claims(self.db, self.codec, identity_id, scopes, **options)
