"""The refresh tokens' reuse interval: a rotation whose answer was lost is answered again.

A refresh token rotates on every use, and a rotated token presented again revokes its whole
family (OAuth 2.0 Security BCP §4.14). A client whose refresh *was* rotated but whose answer was
lost (a host cut off by a partition committed the rotation after the client gave up, docs/
scaling.md "What the runs found") retries with the only token it has, the rotated one, and
loses the family. Within :attr:`ProviderConfig.refresh_reuse_interval` seconds after the
rotation (``used_at``; Auth0's "reuse interval", Okta's grace period; 0 turns it off), the
rotated token P presented again **by its own client** is answered again when the token its
rotation minted, its immediate successor S, is still unused and unrevoked, and the grant is
live: S is superseded (marked used, so S presented later is a reuse and revokes the family) and
a new successor S′ is minted and returned with new access and ID tokens, exactly as a normal
refresh. Anything else stays a reuse: past the interval, or once S was used (the client got the
answer and moved on), the family is revoked; another client presenting P is refused with no
write, as before.

How S is found: by ``rotated_from``, a column (migration 0024) holding the digest of the token
whose rotation minted the row; S′ gets P's digest too (it answers P's rotation), so at most one
unused token has ``rotated_from = P`` at any time and each re-answer supersedes the last. The
alternative without a column — "the grant's only unused token, created at P's ``used_at``" —
is not exact: a re-answer mints S′ at another instant (so a second retry would find nothing, or
P's ``used_at`` would have to move, stretching the interval), timestamps of two rotations may
tie, and it silently depends on a grant having one chain. Tokens minted before 0024 have no link,
so their rotations are never re-answered.

Race safety: the re-answer is a rotation like any other (``idp/oidc/rotation.py``): its claim is
one conditional ``UPDATE … RETURNING`` of S by its digest (:data:`SQL_SUPERSEDE`, re-checking
everything the read saw: S unused, unrevoked, unexpired, P within the interval, the grant live),
written with its minted token and its ``oidc.token.refresh`` audit record (details name the
``superseded`` token) in one transaction. Of two re-presentations racing for S, exactly one
supersedes it; the other finds S used and looks again: it now finds S′ (the winner's, unused)
and supersedes that one, as if it had come a moment later — both answered, one after the other,
and exactly one successor live. Answering the loser rather than refusing it matters: in the
partition that motivated this, two retries of one client waited on P's row lock together and
the one the client still waited for was as likely to lose as to win. A bounded number of such
losses in a row (:data:`REANSWER_TRIES`) falls back to reuse: the family is revoked.

The trade-off, plainly: someone holding a just-rotated token (stolen in transit, or the lost
answer's twin) gets tokens during the interval if the legitimate client has not used its
successor yet. Detection still happens, later: the legitimate client's copy — its successor,
now superseded — comes back as a reuse and revokes the family, the thief's tokens with it. The
normal rotation's cost is unchanged but for the ``rotated_from`` value it stores; the
interval's reads and write run only for a token already rotated.
"""

from __future__ import annotations

from datetime import datetime, timedelta

# Re-presentations of one token losing the race for its successor, in a row, before the
# presentation counts as a reuse after all.
REANSWER_TRIES = 3

# A rotated token of this client whose rotation may be answered again: used within the interval
# (:since), live grant, its unused successor. Returns the successor, then what a rotation reads.
SQL_REANSWERABLE = (
    "SELECT s.token_hash, g.id, p.scope, g.claims_sub, g.auth_time, g.acr, g.amr, g.sid"
    " FROM oidc_refresh_tokens p JOIN oidc_grants g ON g.id = p.grant_id"
    " JOIN oidc_refresh_tokens s ON s.grant_id = p.grant_id AND s.rotated_from = p.token_hash"
    " WHERE p.token_hash = :h AND p.client_id = :cid AND p.used_at > :since"
    " AND p.revoked_at IS NULL AND p.expires_at > :at AND g.revoked_at IS NULL"
    " AND s.client_id = :cid AND s.used_at IS NULL AND s.revoked_at IS NULL AND s.expires_at > :at"
)

# The re-answer's claim: supersede the successor :s of :h, re-checking everything the read saw.
SQL_SUPERSEDE = (
    "UPDATE oidc_refresh_tokens SET used_at = :used WHERE token_hash = :s AND rotated_from = :h"
    " AND client_id = :cid AND used_at IS NULL AND revoked_at IS NULL AND expires_at > :at"
    " AND EXISTS (SELECT 1 FROM oidc_refresh_tokens p WHERE p.token_hash = :h"
    " AND p.client_id = :cid AND p.used_at > :since AND p.revoked_at IS NULL"
    " AND p.expires_at > :at) AND EXISTS (SELECT 1 FROM oidc_grants g"
    " WHERE g.id = oidc_refresh_tokens.grant_id AND g.revoked_at IS NULL)"
    " RETURNING grant_id"
)


def interval_start(now: datetime, interval: int) -> datetime:
    """The earliest rotation (``used_at``, exclusive) still inside the interval at ``now``."""
    return now - timedelta(seconds=interval)
