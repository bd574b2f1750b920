"""Password login: argon2id hashes, throttling and temporary locks, generic errors.

Failures are counted per account (login name) and per source address in a window; reaching the
limit locks that key for ``lock_seconds``. While locked even the right password fails, with the
same generic message as a wrong one, and unknown names cost a dummy argon2 verification, so the
answer never tells an attacker whether an account exists.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select

from govtrust import audit
from govtrust.db import Database, as_utc
from govtrust.errors import InvalidArgument
from govtrust.principal import Principal
from idp.oidc.models import OidcPasswordRow, OidcThrottleRow

GENERIC_FAILURE = "login_failed"


@dataclass(frozen=True)
class ThrottlePolicy:
    """How many failures in which window lock an account or an address, and for how long."""

    account_failures: int = 5
    address_failures: int = 20
    window_seconds: int = 900
    lock_seconds: int = 900


class LoginFailed(Exception):
    """Wrong name or password, or a locked account/address: one generic failure for all."""


def normalise_login_name(name: str) -> str:
    """NFKC, trimmed, case-folded login name."""
    return unicodedata.normalize("NFKC", name).strip().casefold()


class PasswordLogin:
    """Argon2id credentials and the throttle over one database."""

    def __init__(
        self,
        db: Database,
        *,
        policy: ThrottlePolicy | None = None,
        hasher: PasswordHasher | None = None,
    ) -> None:
        self.db = db
        self.policy = policy or ThrottlePolicy()
        self.hasher = hasher or PasswordHasher()  # argon2id, RFC 9106 low-memory profile
        self._dummy = self.hasher.hash("govtrust-dummy-password")

    def set_password(
        self, principal: Principal, *, identity_id: str, login_name: str, password: str
    ) -> None:
        """Set (or replace) an identity's login name and password."""
        principal.require_role("identity-registrar")
        name = normalise_login_name(login_name)
        if not 3 <= len(name) <= 128:
            raise InvalidArgument.field("login_name", "3-128 characters")
        if len(password) < 10:
            raise InvalidArgument.field("password", "at least 10 characters")
        digest = self.hasher.hash(password)
        now = datetime.now(UTC)
        with self.db.transaction() as session:
            clash = session.scalar(
                select(OidcPasswordRow).where(OidcPasswordRow.login_name == name)
            )
            if clash is not None and clash.identity_id != identity_id:
                raise InvalidArgument.field("login_name", "already taken")
            row = session.get(OidcPasswordRow, identity_id)
            if row is None:
                session.add(
                    OidcPasswordRow(
                        identity_id=identity_id,
                        login_name=name,
                        password_hash=digest,
                        updated_at=now,
                    )
                )
            else:
                row.login_name, row.password_hash, row.updated_at = name, digest, now
            audit.append(
                session,
                actor=principal.actor,
                action="oidc.password.set",
                target=f"identity:{identity_id}",
            )

    def _locked(self, row: OidcThrottleRow | None, now: datetime) -> bool:
        return row is not None and row.locked_until is not None and as_utc(row.locked_until) > now

    def authenticate(self, login_name: str, password: str, *, source: str) -> str:
        """The identity id for a correct, unthrottled login; ``LoginFailed`` otherwise."""
        name = normalise_login_name(login_name)
        now = datetime.now(UTC)
        account_key, address_key = f"acct:{name}"[:200], f"addr:{source}"[:200]
        with self.db.read() as session:
            row = session.scalar(select(OidcPasswordRow).where(OidcPasswordRow.login_name == name))
            locks = {
                r.key: r
                for r in session.scalars(
                    select(OidcThrottleRow).where(
                        OidcThrottleRow.key.in_([account_key, address_key])
                    )
                )
            }
        locked = self._locked(locks.get(account_key), now) or self._locked(
            locks.get(address_key), now
        )
        ok = False
        try:
            self.hasher.verify(row.password_hash if row else self._dummy, password)
            ok = row is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            ok = False
        if ok and not locked:
            assert row is not None
            if locks:
                self._clear(account_key)
            if self.hasher.check_needs_rehash(row.password_hash):
                self._rehash(row.identity_id, password)
            return row.identity_id
        self._fail(account_key, address_key, now, identity_id=row.identity_id if row else None)
        raise LoginFailed(GENERIC_FAILURE)

    def _clear(self, account_key: str) -> None:
        with self.db.transaction() as session:
            row = session.get(OidcThrottleRow, account_key)
            if row is not None:
                session.delete(row)

    def _rehash(self, identity_id: str, password: str) -> None:
        with self.db.transaction() as session:
            row = session.get(OidcPasswordRow, identity_id)
            if row is not None:
                row.password_hash = self.hasher.hash(password)

    def _fail(
        self, account_key: str, address_key: str, now: datetime, *, identity_id: str | None
    ) -> None:
        window = timedelta(seconds=self.policy.window_seconds)
        with self.db.transaction() as session:
            for key, limit in (
                (account_key, self.policy.account_failures),
                (address_key, self.policy.address_failures),
            ):
                row = session.get(OidcThrottleRow, key)
                if row is None:
                    row = OidcThrottleRow(key=key, failures=0, window_start=now, locked_until=None)
                    session.add(row)
                if as_utc(row.window_start) + window < now:
                    row.failures, row.window_start = 0, now
                row.failures += 1
                if row.failures >= limit:
                    row.locked_until = now + timedelta(seconds=self.policy.lock_seconds)
                    row.failures, row.window_start = 0, now
            audit.append(
                session,
                actor=f"address:{address_key[5:]}",
                action="oidc.login.password",
                target=f"identity:{identity_id}" if identity_id else "identity:unknown",
                outcome="denied",
            )
