"""The audit chain's MAC key: derived once per process from the master key, never handed out.

The chain is keyed with HMAC-SHA256 under a subkey of the master key (HKDF, purpose
``audit/chain-mac/v<n>``). Deriving it costs one HKDF per process; each record then costs one
HMAC in memory, which the CA's group commit can afford at thousands of records a second (a
key-store round trip per record on a PKCS#11 token could not). The key bytes stay inside a
:class:`AuditChainKey`; callers only get :meth:`AuditChainKey.mac` and the scheme name that
says which key version made a MAC. Checkpoints of the chain head are additionally signed by a
key-store key (see :func:`checkpoint_key`), so their authenticity does not rest on the master key
alone.
"""

from __future__ import annotations

import hashlib
import hmac

from govtrust import audit
from govtrust.db import Database
from hsm.keystore import KeyAlgorithm, KeyRef, KeyStore
from hsm.master import MasterKey

AUDIT_CHAIN_KEY_VERSION = 1
CHECKPOINT_KEY_LABEL = "govtrust audit checkpoints"


class AuditChainKey:
    """HMAC-SHA256 over audit records with a master-key subkey; the key itself never leaves."""

    __slots__ = ("__mac", "scheme")

    def __init__(self, master_key: MasterKey, version: int = AUDIT_CHAIN_KEY_VERSION) -> None:
        key = master_key.derive_key(f"audit/chain-mac/v{version}")
        self.__mac = hmac.new(key, digestmod=hashlib.sha256)
        self.scheme = f"hmac-sha256/v{version}"

    def __repr__(self) -> str:
        return f"AuditChainKey(scheme={self.scheme!r})"

    def mac(self, data: bytes) -> bytes:
        """HMAC-SHA256 of ``data`` under the chain key (thread-safe: a copy per call)."""
        mac = self.__mac.copy()
        mac.update(data)
        return mac.digest()


def install_audit_chain_key(db: Database, master_key: MasterKey) -> AuditChainKey:
    """Key every audit record appended through ``db`` with the master key's chain subkey."""
    key = AuditChainKey(master_key)
    audit.install_chain_key(db, key)
    return key


def checkpoint_key(keystore: KeyStore) -> KeyRef:
    """The key-store key that signs audit checkpoints (EC P-256), generated on first use.

    The oldest live key with the label wins, so two processes racing to create it converge on
    the first one after their next look-up; the checkpoint records the key id it used.
    """
    for ref in keystore.list():
        if ref.label == CHECKPOINT_KEY_LABEL:
            return ref
    return keystore.generate(CHECKPOINT_KEY_LABEL, KeyAlgorithm.EC_P256)
