"""The soft key store: keys in the database, wrapped with AES-256-GCM under a master-key subkey.

Generation makes the key with ``cryptography`` (SM2 keys with :mod:`hsm.sm2`), serialises it as
PKCS#8 DER and wraps it with AES-256-GCM (random 96-bit nonce; AAD binds ``key_id`` and
``algorithm``) under the subkey ``hsm/soft-key-wrap/v1`` of the master key. Only the wrapped form
reaches the database.

Signing must cost little more than ``cryptography``'s own ``sign``: unwrapped keys live in a
bounded LRU cache (``cache_size`` keys) together with one pre-bound signing function per fitting
scheme, so a hit is a dict look-up and a call — no database round trip, no parsing. Each cached
entry is re-checked against the database at most every ``revalidate_seconds`` (default 2 s), so a
key destroyed by another process (another worker or replica) stops signing here within that
interval; a destroy in this process evicts the key at once.

Escrowed encryption keys (the key management centre, :mod:`ca.kmc`): :meth:`SoftKeyStore.
generate_escrowed` makes an SM2 key pair whose PKCS#8 is wrapped with SM4-GCM under the KMC key
(master-key subkey ``hsm/kmc-escrow/v1``; wrap scheme ``kmc-sm4gcm-v1``, same AAD binding). Such a
key never signs and never leaves in clear: :meth:`SoftKeyStore.export_enveloped` returns it only
as a GM/T 0009 ``SM2EnvelopedKey`` to a named SM2 public key (:mod:`hsm.envelope`).
"""

from __future__ import annotations

import builtins
import collections
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import case, func, select, update

from govtrust.db import Database, as_utc
from hsm.atrest import AtRestCipher, AtRestError, AtRestScheme
from hsm.envelope import build_enveloped_key
from hsm.errors import (
    EscrowedKeyCannotSign,
    KeyDestroyed,
    KeyNotFound,
    KeyStoreUnavailable,
    KeyUnwrapFailed,
    NotEscrowed,
    UnsupportedAlgorithm,
)
from hsm.keystore import (
    ALGORITHMS,
    SCHEMES,
    KeyAlgorithm,
    KeyFamily,
    KeyRef,
    KeyRefOrId,
    SignatureScheme,
    check_scheme,
    check_signer_id,
    key_id_of,
    new_key_id,
    parse_algorithm,
    validate_label,
)
from hsm.master import MasterKey
from hsm.models import HsmKey
from hsm.sm2 import Sm2PrivateKey

WRAP_SCHEME = "aes256gcm-v1"
WRAP_PURPOSE = "hsm/soft-key-wrap/v1"
_AAD_PREFIX = b"govtrust hsm_keys aes256gcm-v1\x00"
ESCROW_WRAP_SCHEME = "kmc-sm4gcm-v1"
ESCROW_PURPOSE = "hsm/kmc-escrow/v1"
_ESCROW_AAD_PREFIX = b"govtrust hsm_keys kmc-sm4gcm-v1\x00"

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | Sm2PrivateKey
SignFn = Callable[[bytes], bytes]

_HASHES: dict[str, hashes.HashAlgorithm] = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384()}


def _aad(key_id: str, algorithm: str) -> bytes:
    return _AAD_PREFIX + key_id.encode("ascii") + b"\x00" + algorithm.encode("ascii")


def _escrow_aad(key_id: str, algorithm: str) -> bytes:
    return _ESCROW_AAD_PREFIX + key_id.encode("ascii") + b"\x00" + algorithm.encode("ascii")


def _generate_private_key(algorithm: KeyAlgorithm) -> PrivateKey:
    spec = ALGORITHMS[algorithm]
    if spec.family is KeyFamily.SM2:
        return Sm2PrivateKey.generate()
    if spec.family is KeyFamily.EC:
        curve = {"secp256r1": ec.SECP256R1(), "secp384r1": ec.SECP384R1()}[spec.curve or ""]
        return ec.generate_private_key(curve)
    if spec.family is KeyFamily.RSA and spec.key_size:
        return rsa.generate_private_key(public_exponent=65537, key_size=spec.key_size)
    raise UnsupportedAlgorithm.field(
        "algorithm", f"the soft key store cannot generate {algorithm.value} keys"
    )


def _matches(key: PrivateKey, algorithm: KeyAlgorithm) -> bool:
    spec = ALGORITHMS[algorithm]
    if isinstance(key, Sm2PrivateKey):
        return spec.family is KeyFamily.SM2
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return spec.family is KeyFamily.EC and key.curve.name == spec.curve
    return spec.family is KeyFamily.RSA and key.key_size == spec.key_size


def signing_functions(key: PrivateKey, algorithm: KeyAlgorithm) -> dict[str, SignFn]:
    """One pre-bound ``sign(data)`` per scheme that fits the key (keyed by scheme value)."""
    functions: dict[str, SignFn] = {}
    family = ALGORITHMS[algorithm].family
    for scheme, spec in SCHEMES.items():
        if spec.family is not family:
            continue
        if isinstance(key, Sm2PrivateKey):
            functions[scheme.value] = key.sign  # sign(data) uses the default signer ID
            continue
        digest = _HASHES[spec.digest]
        if isinstance(key, ec.EllipticCurvePrivateKey):
            functions[scheme.value] = partial(key.sign, signature_algorithm=ec.ECDSA(digest))
        elif spec.padding == "pss":
            pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=spec.digest_size)
            functions[scheme.value] = partial(key.sign, padding=pss, algorithm=digest)
        else:
            functions[scheme.value] = partial(
                key.sign, padding=padding.PKCS1v15(), algorithm=digest
            )
    return functions


@dataclass
class _Entry:
    algorithm: KeyAlgorithm
    signers: dict[str, SignFn]
    valid_until: float
    sm2: Sm2PrivateKey | None = None  # for signatures over a signer ID other than the default


class SoftKeyStore:
    """A :class:`hsm.KeyStore` over the ``hsm_keys`` table (embedded default and tests)."""

    signs_on_device = False  # signing is CPU work in this process

    def __init__(
        self,
        db: Database,
        master_key: MasterKey,
        *,
        cache_size: int = 1024,
        revalidate_seconds: float = 2.0,
    ) -> None:
        self._db = db
        self._aead = AESGCM(master_key.derive_key(WRAP_PURPOSE))
        # the KMC key: SM4-GCM (the AES purpose is never used for escrow; both are required)
        self._escrow = AtRestCipher(
            master_key,
            {
                AtRestScheme.AES_256_GCM: ESCROW_PURPOSE + "/unused-aes",
                AtRestScheme.SM4_GCM: ESCROW_PURPOSE,
            },
            AtRestScheme.SM4_GCM,
        )
        self._cache: collections.OrderedDict[str, _Entry] = collections.OrderedDict()
        self._cache_size = max(1, cache_size)
        self._revalidate = revalidate_seconds
        self._lock = threading.Lock()
        self._closed = False

    # --- public API -------------------------------------------------------------------------

    def generate(self, label: str, algorithm: KeyAlgorithm | str) -> KeyRef:
        """Generate a key, store it wrapped, and keep it warm in the cache."""
        label = validate_label(label)
        algo = parse_algorithm(algorithm)
        self._check_open()
        key = _generate_private_key(algo)
        key_id, created_at = new_key_id()
        if isinstance(key, Sm2PrivateKey):
            public_der, pkcs8 = key.public_key_der, key.to_pkcs8()
        else:
            public_der = key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            pkcs8 = key.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        nonce = os.urandom(12)
        wrapped = self._aead.encrypt(nonce, pkcs8, _aad(key_id, algo.value))
        del pkcs8
        with self._db.transaction() as session:
            session.add(
                HsmKey(
                    key_id=key_id,
                    label=label,
                    algorithm=algo.value,
                    public_key_der=public_der,
                    wrap_scheme=WRAP_SCHEME,
                    wrap_nonce=nonce,
                    wrapped_key=wrapped,
                    created_at=created_at,
                    destroyed_at=None,
                )
            )
        self._remember(key_id, algo, key)
        return KeyRef(key_id, label, algo, public_der, created_at)

    def sign(
        self,
        ref_or_id: KeyRefOrId,
        data: bytes,
        scheme: SignatureScheme | str,
        *,
        signer_id: bytes | str | None = None,
    ) -> bytes:
        """Sign with a cached key (a dict look-up and the library's sign on the hot path).

        ``signer_id`` (SM2 only) goes into Z; ``None`` is the default ``1234567812345678``.
        """
        key_id = ref_or_id if type(ref_or_id) is str else key_id_of(ref_or_id)
        entry = self._cache.get(key_id)
        if entry is None or entry.valid_until < time.monotonic():
            entry = self._load(key_id)
        fn = entry.signers.get(scheme)
        if fn is None:
            check_scheme(entry.algorithm, scheme)  # raises the specific error
            raise AssertionError("unreachable")  # pragma: no cover
        if signer_id is None:
            return fn(data)
        check_signer_id(scheme, signer_id)
        assert entry.sm2 is not None  # an SM2 scheme fitted the key, so the key is SM2
        return entry.sm2.sign(data, signer_id)

    def generate_escrowed(self, label: str) -> KeyRef:
        """An SM2 encryption key pair, its private half wrapped under the KMC key (SM4-GCM)."""
        label = validate_label(label)
        self._check_open()
        key = Sm2PrivateKey.generate()
        key_id, created_at = new_key_id()
        algo = KeyAlgorithm.SM2
        public_der = key.public_key_der
        blob = self._escrow.encrypt(key.to_pkcs8(), _escrow_aad(key_id, algo.value))
        with self._db.transaction() as session:
            session.add(
                HsmKey(
                    key_id=key_id,
                    label=label,
                    algorithm=algo.value,
                    public_key_der=public_der,
                    wrap_scheme=ESCROW_WRAP_SCHEME,
                    wrap_nonce=blob[1:13],
                    wrapped_key=blob,
                    created_at=created_at,
                    destroyed_at=None,
                )
            )
        return KeyRef(key_id, label, algo, public_der, created_at)

    def export_enveloped(self, ref_or_id: KeyRefOrId, recipient_public_key: bytes) -> bytes:
        """The escrowed key enveloped (GM/T 0009) to ``recipient_public_key`` (SM2 SPKI DER)."""
        key_id = key_id_of(ref_or_id)
        row = self._row(key_id)
        if row.wrap_scheme != ESCROW_WRAP_SCHEME:
            raise NotEscrowed(key_id)
        if row.destroyed_at is not None or row.wrapped_key is None:
            raise KeyDestroyed(key_id)
        try:
            pkcs8 = self._escrow.decrypt(
                row.wrapped_key, _escrow_aad(key_id, row.algorithm), f"escrowed key {key_id}"
            )
            key = Sm2PrivateKey.from_pkcs8(pkcs8)
        except (AtRestError, ValueError):
            raise KeyUnwrapFailed(key_id) from None
        if key.public_key_der != row.public_key_der:
            raise KeyUnwrapFailed(key_id)
        return build_enveloped_key(key, recipient_public_key)

    def public_key(self, ref_or_id: KeyRefOrId) -> bytes:
        """SubjectPublicKeyInfo DER (also for destroyed keys, to verify their old signatures)."""
        return self._row(key_id_of(ref_or_id)).public_key_der

    def get(self, key_id: str) -> KeyRef:
        """The reference of a live key."""
        row = self._row(key_id)
        if row.destroyed_at is not None:
            raise KeyDestroyed(key_id)
        return self._ref(row)

    def list(self) -> list[KeyRef]:
        """Live keys, oldest first."""
        self._check_open()
        with self._db.read() as session:
            rows = session.scalars(
                select(HsmKey)
                .where(HsmKey.destroyed_at.is_(None), HsmKey.wrap_scheme != ESCROW_WRAP_SCHEME)
                .order_by(HsmKey.created_at, HsmKey.key_id)
            ).all()
        return [self._ref(row) for row in rows]

    def key_counts(self) -> builtins.list[tuple[str, str, int]]:
        """(algorithm, state, count) of every key row: active, escrowed or destroyed."""
        self._check_open()
        state = case(
            (HsmKey.destroyed_at.is_not(None), "destroyed"),
            (HsmKey.wrap_scheme == ESCROW_WRAP_SCHEME, "escrowed"),
            else_="active",
        )
        with self._db.read() as session:
            rows = session.execute(
                select(HsmKey.algorithm, state, func.count())
                .group_by(HsmKey.algorithm, state)
                .order_by(HsmKey.algorithm, state)
            ).all()
        return [(str(a), str(s), int(n)) for a, s, n in rows]

    def destroy(self, ref_or_id: KeyRefOrId) -> None:
        """Erase the wrapped private key (the row stays, marked destroyed); idempotent."""
        key_id = key_id_of(ref_or_id)
        self._check_open()
        with self._db.transaction() as session:
            result = session.execute(
                update(HsmKey)
                .where(HsmKey.key_id == key_id, HsmKey.destroyed_at.is_(None))
                .values(destroyed_at=datetime.now(UTC), wrapped_key=None, wrap_nonce=None)
            )
            if result.rowcount == 0:  # type: ignore[attr-defined]
                exists = session.scalar(select(HsmKey.key_id).where(HsmKey.key_id == key_id))
                if exists is None:
                    raise KeyNotFound(key_id)
        with self._lock:
            self._cache.pop(key_id, None)

    def ping(self) -> None:
        """The store is open and its table answers (no key is read)."""
        self._check_open()
        with self._db.read() as session:
            session.execute(select(HsmKey.key_id).limit(1)).first()

    def close(self) -> None:
        """Drop every cached key. The database handle belongs to the caller and stays open."""
        with self._lock:
            self._cache.clear()
            self._closed = True

    # --- internals --------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise KeyStoreUnavailable("the soft key store has been closed")

    def _row(self, key_id: str) -> HsmKey:
        self._check_open()
        if not isinstance(key_id, str) or not key_id or len(key_id) > 64:
            raise KeyNotFound(str(key_id))
        with self._db.read() as session:
            row = session.get(HsmKey, key_id)
        if row is None:
            raise KeyNotFound(key_id)
        return row

    @staticmethod
    def _ref(row: HsmKey) -> KeyRef:
        return KeyRef(
            key_id=row.key_id,
            label=row.label,
            algorithm=KeyAlgorithm(row.algorithm),
            public_key_der=row.public_key_der,
            created_at=as_utc(row.created_at),
        )

    def _remember(self, key_id: str, algorithm: KeyAlgorithm, key: PrivateKey) -> _Entry:
        entry = _Entry(
            algorithm=algorithm,
            signers=signing_functions(key, algorithm),
            valid_until=time.monotonic() + self._revalidate,
            sm2=key if isinstance(key, Sm2PrivateKey) else None,
        )
        with self._lock:
            if self._closed:
                return entry
            self._cache[key_id] = entry
            self._cache.move_to_end(key_id)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return entry

    def _load(self, key_id: str) -> _Entry:
        """Cache miss or re-validation: read the row, unwrap if needed, (re)fill the cache."""
        row = self._row(key_id)
        if row.destroyed_at is not None or row.wrapped_key is None or row.wrap_nonce is None:
            with self._lock:
                self._cache.pop(key_id, None)
            raise KeyDestroyed(key_id)
        cached = self._cache.get(key_id)
        if cached is not None:  # still live: extend the validity without unwrapping again
            cached.valid_until = time.monotonic() + self._revalidate
            with self._lock:
                if key_id in self._cache:
                    self._cache.move_to_end(key_id)
            return cached
        algorithm = KeyAlgorithm(row.algorithm)
        if row.wrap_scheme == ESCROW_WRAP_SCHEME:
            raise EscrowedKeyCannotSign(key_id)
        if row.wrap_scheme != WRAP_SCHEME:
            raise KeyUnwrapFailed(key_id)
        try:
            pkcs8 = self._aead.decrypt(row.wrap_nonce, row.wrapped_key, _aad(key_id, row.algorithm))
        except InvalidTag:  # wrong master key, or the row was altered
            raise KeyUnwrapFailed(key_id) from None
        key: object
        if ALGORITHMS[algorithm].family is KeyFamily.SM2:
            try:
                key = Sm2PrivateKey.from_pkcs8(pkcs8)
            except ValueError:
                raise KeyUnwrapFailed(key_id) from None
        else:
            key = serialization.load_der_private_key(pkcs8, password=None)
        del pkcs8
        if not isinstance(
            key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | Sm2PrivateKey
        ) or not _matches(key, algorithm):
            raise KeyUnwrapFailed(key_id)
        return self._remember(key_id, algorithm, key)
