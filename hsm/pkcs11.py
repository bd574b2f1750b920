"""The PKCS#11 key store (python-pkcs11): keys generated on a token, never leaving it.

Keys are generated on the token as token objects with ``CKA_SENSITIVE=true``,
``CKA_EXTRACTABLE=false`` and only the ``SIGN`` capability; the private and public objects share a
``CKA_ID`` (the 16 bytes behind the key id, see :func:`hsm.keystore.new_key_id`) and carry the
caller's label. Keys provisioned on the token by other means are listed too (their ``CKA_ID`` in
hex is their key id), provided their algorithm is one govtrust supports.

Signing hashes on the host and sends only the digest: ``CKM_ECDSA`` (the raw ``r || s`` result is
re-encoded as DER), ``CKM_RSA_PKCS`` over a DigestInfo, ``CKM_RSA_PKCS_PSS`` (MGF1 with the same
digest, salt = digest length). That keeps large inputs off the wire to a network HSM and uses the
mechanisms every HSM implements.

Concurrency. PKCS#11 allows one operation at a time per session, so the store keeps a pool of
sessions (``pool_size``, default 8) and each call borrows one; private-key handles are cached
per session for ``key_cache_seconds``. python-pkcs11 calls ``C_Initialize(NULL)``, which lets a
module assume a single-threaded caller (SoftHSM2 then disables its own locking), so on first load
the module is re-initialised with ``CKF_OS_LOCKING_OK``; if the module refuses, every call to it is
serialised with one lock instead. Login state is per process: the first store to open a token
logs in (and so checks the PIN; a later store on an already logged-in token cannot have its PIN
checked, because modules answer ``CKR_USER_ALREADY_LOGGED_IN`` first); sessions are closed
without ``C_Logout`` so that closing one store never logs out another store on the same token.
When the last store using a module closes, the module is finalised, so a later store re-reads
the module's configuration. Because of this, a process should reach a module only through
``Pkcs11KeyStore`` (loading it with python-pkcs11 elsewhere would share and disturb its state).

A store must be opened in the process that uses it (after any fork): PKCS#11 sessions do not
survive ``fork``, and the store refuses to be used from a child process.

SM2. PKCS#11 defines no SM2 key type or mechanism, so they are settings (:class:`Pkcs11Sm2`,
``GOVTRUST_PKCS11_SM2_*``): the vendor key type, the key-pair generation mechanism and the
mechanism that signs a 32-byte SM3 digest ``e`` (govtrust computes Z over the signer ID and
``e = SM3(Z ‖ M)`` on the host, as it hashes on the host for ECDSA). Without them, or on a token
that does not list those mechanisms (SoftHSM2), SM2 requests raise :class:`Sm2NotAvailable`
naming what is missing. Token keys of the configured SM2 key type, or EC keys on the SM2 curve,
are listed as SM2 keys.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import pkcs11
from asn1crypto.core import OctetString
from asn1crypto.keys import ECDomainParameters
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11e
from pkcs11.mechanisms import MGF
from pkcs11.util.ec import encode_named_curve_parameters

from hsm import sm2
from hsm.errors import (
    EscrowNotSupported,
    InvalidLabel,
    KeyDestroyed,
    KeyNotFound,
    KeyStoreLoginFailed,
    KeyStoreUnavailable,
    Sm2NotAvailable,
    TokenNotFound,
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
    created_at_from_key_id,
    key_id_of,
    new_key_id,
    parse_algorithm,
    validate_label,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CKF_OS_LOCKING_OK = 0x00000002

# DER DigestInfo prefixes (RFC 8017 §9.2 note 1) for CKM_RSA_PKCS over a host-computed digest.
_DIGEST_INFO = {
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
}
_MGF = {"sha256": MGF.SHA256, "sha384": MGF.SHA384}
_HASH_MECH = {"sha256": Mechanism.SHA256, "sha384": Mechanism.SHA384}

# The session (or the device behind it) is gone: drop the session, report unavailable.
_BROKEN_SESSION = (
    p11e.SessionHandleInvalid,
    p11e.SessionClosed,
    p11e.DeviceRemoved,
    p11e.DeviceError,
    p11e.TokenNotPresent,
    p11e.TokenNotRecognised,
)
_STALE_HANDLE = (p11e.ObjectHandleInvalid, p11e.KeyHandleInvalid)


# --- one loaded module per process ---------------------------------------------------------------


class _CInitializeArgs(ctypes.Structure):
    _fields_ = [
        ("CreateMutex", ctypes.c_void_p),
        ("DestroyMutex", ctypes.c_void_p),
        ("LockMutex", ctypes.c_void_p),
        ("UnlockMutex", ctypes.c_void_p),
        ("flags", ctypes.c_ulong),
        ("pReserved", ctypes.c_void_p),
    ]


@dataclass
class _Module:
    path: str
    lib: Any
    dll: ctypes.CDLL
    thread_safe: bool
    refs: int = 0
    guard: threading.Lock = field(default_factory=threading.Lock)

    def close_session(self, handle: int) -> None:
        """``C_CloseSession`` without ``C_Logout`` (which would log out every session)."""
        with contextlib.suppress(Exception):
            self.dll.C_CloseSession(ctypes.c_ulong(handle))


_MODULES: dict[str, _Module] = {}
_MODULES_LOCK = threading.Lock()


def _reinitialise_with_os_locking(dll: ctypes.CDLL) -> bool:
    """Re-run ``C_Initialize`` asking the module to lock for concurrent threads."""
    try:
        finalize, initialize = dll.C_Finalize, dll.C_Initialize
    except AttributeError:
        return False
    finalize.argtypes = [ctypes.c_void_p]
    finalize.restype = ctypes.c_ulong
    initialize.argtypes = [ctypes.c_void_p]
    initialize.restype = ctypes.c_ulong
    if finalize(None) != 0:
        return False
    args = _CInitializeArgs(None, None, None, None, _CKF_OS_LOCKING_OK, None)
    if initialize(ctypes.byref(args)) == 0:
        return True
    initialize(None)  # the module cannot lock: back to the single-threaded contract
    return False


def _acquire_module(module_path: str) -> _Module:
    path = os.path.realpath(module_path)
    with _MODULES_LOCK:
        module = _MODULES.get(path)
        if module is not None and module.refs > 0:
            module.refs += 1
            return module
        if not os.path.isfile(path):
            raise KeyStoreUnavailable(f"PKCS#11 module {module_path} does not exist")
        try:
            lib = pkcs11.lib(path)
        except p11e.PKCS11Error as exc:
            detail = str(exc) or type(exc).__name__
            hint = " (for SoftHSM2, check SOFTHSM2_CONF and its token directory)"
            raise KeyStoreUnavailable(
                f"cannot load or initialise PKCS#11 module {module_path}: {detail}"
                + (hint if "softhsm" in path.lower() else "")
            ) from None
        dll = ctypes.CDLL(path)
        dll.C_CloseSession.argtypes = [ctypes.c_ulong]
        dll.C_CloseSession.restype = ctypes.c_ulong
        thread_safe = _reinitialise_with_os_locking(dll)
        module = _Module(path=path, lib=lib, dll=dll, thread_safe=thread_safe, refs=1)
        _MODULES[path] = module
        return module


def _release_module(module: _Module) -> None:
    with _MODULES_LOCK:
        module.refs -= 1
        if module.refs == 0:
            with contextlib.suppress(Exception):
                module.lib.finalize()


# --- sessions -----------------------------------------------------------------------------------


@dataclass
class _PooledSession:
    session: Any
    # key_id -> (private key object, valid until monotonic time)
    keys: dict[str, tuple[Any, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Mechanism:
    mechanism: Mechanism
    param: Any
    digest: str
    kind: str  # "ecdsa" | "pkcs1v15" | "pss"


@dataclass(frozen=True)
class Pkcs11Sm2:
    """The vendor constants for SM2 on a PKCS#11 module (``None``: not configured).

    ``key_type`` (``GOVTRUST_PKCS11_SM2_KEY_TYPE``) is the ``CKK_`` value of SM2 keys,
    ``keygen_mechanism`` (``GOVTRUST_PKCS11_SM2_KEYGEN_MECHANISM``) the ``CKM_`` that generates an
    SM2 key pair, ``mechanism`` (``GOVTRUST_PKCS11_SM2_MECHANISM``) the ``CKM_`` that signs a
    32-byte digest and returns ``r ‖ s``.
    """

    key_type: int | None = None
    keygen_mechanism: int | None = None
    mechanism: int | None = None

    SETTINGS = (
        ("key_type", "GOVTRUST_PKCS11_SM2_KEY_TYPE"),
        ("keygen_mechanism", "GOVTRUST_PKCS11_SM2_KEYGEN_MECHANISM"),
        ("mechanism", "GOVTRUST_PKCS11_SM2_MECHANISM"),
    )

    def missing(self) -> list[str]:
        """The settings that are not set, by their environment names."""
        return [env for name, env in self.SETTINGS if getattr(self, name) is None]


def _mechanism_for(scheme: SignatureScheme) -> _Mechanism:
    spec = SCHEMES[scheme]
    if spec.family is KeyFamily.SM2:  # the vendor mechanism is chosen per store (settings)
        return _Mechanism(Mechanism.ECDSA, None, spec.digest, "sm2")
    if spec.family is KeyFamily.EC:
        return _Mechanism(Mechanism.ECDSA, None, spec.digest, "ecdsa")
    if spec.padding == "pss":
        param = (_HASH_MECH[spec.digest], _MGF[spec.digest], spec.digest_size)
        return _Mechanism(Mechanism.RSA_PKCS_PSS, param, spec.digest, "pss")
    return _Mechanism(Mechanism.RSA_PKCS, None, spec.digest, "pkcs1v15")


_MECHANISMS = {scheme.value: _mechanism_for(scheme) for scheme in SCHEMES}
# ECParameters namedCurve 1.2.156.10197.1.301 (DER OBJECT IDENTIFIER)
_SM2_EC_PARAMS = bytes.fromhex("06082a811ccf5501822d")


def _curve_name(ec_params: bytes) -> str:
    params = ECDomainParameters.load(ec_params)
    if params.name != "named":
        raise UnsupportedAlgorithm("EC keys with explicit curve parameters are not supported")
    return str(params.chosen.native)


def _algorithm_for(family: KeyFamily, curve: str | None, key_size: int | None) -> KeyAlgorithm:
    for algorithm, spec in ALGORITHMS.items():
        if spec.family is family and spec.curve == curve and spec.key_size == key_size:
            return algorithm
    what = f"curve {curve}" if family is KeyFamily.EC else f"{key_size}-bit modulus"
    raise UnsupportedAlgorithm(f"unsupported {family.value} key on the token ({what})")


def _ec_point(public: Any) -> bytes:
    raw_point = public[Attribute.EC_POINT]
    try:  # PKCS#11 says DER OCTET STRING; some modules return the bare point
        return bytes(OctetString.load(raw_point).native)
    except (ValueError, TypeError):
        return bytes(raw_point)


def _public_key_info(public: Any, sm2_key_type: int | None = None) -> tuple[KeyAlgorithm, bytes]:
    """Algorithm and SubjectPublicKeyInfo DER of a PKCS#11 public key object."""
    key_type = public[Attribute.KEY_TYPE]
    if sm2_key_type is not None and int(key_type) == sm2_key_type:
        return KeyAlgorithm.SM2, sm2.encode_public_key(_ec_point(public))
    if key_type == KeyType.EC:
        curve = _curve_name(public[Attribute.EC_PARAMS])
        if curve == sm2.SM2_CURVE_OID:  # an EC-typed key on the SM2 curve
            return KeyAlgorithm.SM2, sm2.encode_public_key(_ec_point(public))
        algorithm = _algorithm_for(KeyFamily.EC, curve, None)
        point = _ec_point(public)
        ec_curve = {"secp256r1": ec.SECP256R1(), "secp384r1": ec.SECP384R1()}[curve]
        key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey = (
            ec.EllipticCurvePublicKey.from_encoded_point(ec_curve, point)
        )
    elif key_type == KeyType.RSA:
        modulus = int.from_bytes(public[Attribute.MODULUS], "big")
        exponent = int.from_bytes(public[Attribute.PUBLIC_EXPONENT], "big")
        algorithm = _algorithm_for(KeyFamily.RSA, None, modulus.bit_length())
        key = rsa.RSAPublicNumbers(exponent, modulus).public_key()
    else:
        raise UnsupportedAlgorithm(f"unsupported key type on the token: {key_type!r}")
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return algorithm, der


_HEX = frozenset("0123456789abcdef")


def _cka_id(key_id: str) -> bytes:
    """The ``CKA_ID`` behind a key id (lower-case hex); :class:`KeyNotFound` for anything else."""
    if (
        not isinstance(key_id, str)
        or not key_id
        or len(key_id) > 128
        or len(key_id) % 2
        or not _HEX.issuperset(key_id)
    ):
        raise KeyNotFound(str(key_id))
    return bytes.fromhex(key_id)


class Pkcs11KeyStore:
    """A :class:`hsm.KeyStore` on a PKCS#11 token (production HSMs; SoftHSM2 in tests)."""

    signs_on_device = True  # signing waits on the token

    def __init__(
        self,
        module_path: str,
        token_label: str,
        pin: str,
        *,
        pool_size: int = 8,
        acquire_timeout: float = 30.0,
        key_cache_seconds: float = 5.0,
        sm2: Pkcs11Sm2 | None = None,
    ) -> None:
        self._sm2 = sm2 or Pkcs11Sm2()
        self._sm2_checked = False
        self._module_path = module_path
        self._token_label = token_label
        self._pin = pin
        self._pool_size = max(1, pool_size)
        self._acquire_timeout = acquire_timeout
        self._key_cache_seconds = key_cache_seconds
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._idle: list[_PooledSession] = []
        self._all: list[_PooledSession] = []
        self._opening = 0
        self._closed = False
        self._borrowed_at_close = 0
        self._refs: dict[str, KeyRef] = {}
        self._module = _acquire_module(module_path)
        self._guard: contextlib.AbstractContextManager[Any] = (
            contextlib.nullcontext() if self._module.thread_safe else self._module.guard
        )
        try:
            self._token = self._find_token()
            first = self._login()
        except BaseException:
            _release_module(self._module)
            raise
        self._all.append(first)
        self._idle.append(first)

    # --- set-up -----------------------------------------------------------------------------

    def _find_token(self) -> Any:
        lib = self._module.lib
        try:
            with self._guard:
                return lib.get_token(token_label=self._token_label)
        except p11e.NoSuchToken:
            with contextlib.suppress(p11e.PKCS11Error), self._guard:
                present = sorted(
                    slot.get_token().label for slot in lib.get_slots(token_present=True)
                )
            labels = ", ".join(repr(label) for label in present) or "none"
            raise TokenNotFound(
                f"no PKCS#11 token labelled {self._token_label!r} in module "
                f"{self._module_path} (tokens present: {labels})"
            ) from None
        except p11e.MultipleTokensReturned:
            raise KeyStoreUnavailable(
                f"more than one PKCS#11 token is labelled {self._token_label!r}; "
                "give each token a unique label"
            ) from None
        except p11e.PKCS11Error as exc:
            raise KeyStoreUnavailable(
                f"cannot enumerate tokens of {self._module_path}: {type(exc).__name__}"
            ) from None

    def _login(self) -> _PooledSession:
        """Open a read/write session and log the user in (unless this process already is)."""
        label = self._token_label
        try:
            with self._guard:
                return _PooledSession(self._token.open(rw=True, user_pin=self._pin))
        except p11e.UserAlreadyLoggedIn:
            # Another store in this process holds the login; sessions share it.
            return self._open_session()
        except p11e.PinIncorrect:
            raise KeyStoreLoginFailed(f"wrong PIN for PKCS#11 token {label!r}") from None
        except p11e.PinLocked:
            raise KeyStoreLoginFailed(
                f"the user PIN of PKCS#11 token {label!r} is locked (too many wrong attempts)"
            ) from None
        except (p11e.PinLenRange, p11e.PinInvalid):
            raise KeyStoreLoginFailed(
                f"the configured PIN for PKCS#11 token {label!r} has an invalid length or "
                "characters"
            ) from None
        except p11e.UserPinNotInitialized:
            raise KeyStoreLoginFailed(f"PKCS#11 token {label!r} has no user PIN set") from None
        except p11e.PKCS11Error as exc:
            raise KeyStoreUnavailable(
                f"cannot open a session on PKCS#11 token {label!r}: {type(exc).__name__}"
            ) from None

    def _open_session(self) -> _PooledSession:
        try:
            with self._guard:
                return _PooledSession(self._token.open(rw=True))
        except p11e.PKCS11Error as exc:
            raise KeyStoreUnavailable(
                f"cannot open a session on PKCS#11 token {self._token_label!r}: "
                f"{type(exc).__name__}"
            ) from None

    # --- session pool -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _session(self) -> Iterator[_PooledSession]:
        pooled = self._acquire()
        broken = False
        try:
            yield pooled
        except _BROKEN_SESSION:
            broken = True
            raise
        finally:
            self._release(pooled, broken)

    def _acquire(self) -> _PooledSession:
        if os.getpid() != self._pid:
            raise KeyStoreUnavailable(
                "this PKCS#11 key store was opened in a parent process; open it after fork"
            )
        deadline = time.monotonic() + self._acquire_timeout
        with self._cond:
            while True:
                if self._closed:
                    raise KeyStoreUnavailable("the PKCS#11 key store has been closed")
                if self._idle:
                    return self._idle.pop()
                if len(self._all) + self._opening < self._pool_size:
                    self._opening += 1
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise KeyStoreUnavailable(
                        f"no PKCS#11 session became free within {self._acquire_timeout:.0f} s "
                        f"(pool size {self._pool_size})"
                    )
                self._cond.wait(remaining)
        try:
            pooled = self._open_session()
        except BaseException:
            release_module = False
            with self._cond:
                self._opening -= 1
                if self._closed:
                    self._borrowed_at_close -= 1
                    release_module = self._borrowed_at_close == 0
                self._cond.notify()
            if release_module:
                _release_module(self._module)
            raise
        with self._cond:
            self._opening -= 1
            closed = self._closed
            if not closed:
                self._all.append(pooled)
        if closed:
            self._release(pooled, broken=True)
            raise KeyStoreUnavailable("the PKCS#11 key store has been closed")
        return pooled

    def _release(self, pooled: _PooledSession, broken: bool) -> None:
        release_module = False
        with self._cond:
            if self._closed:
                discard = True  # close() left borrowed sessions for their borrowers to close
                self._borrowed_at_close -= 1
                release_module = self._borrowed_at_close == 0
            elif broken:
                self._all.remove(pooled)
                discard = True
            else:
                self._idle.append(pooled)
                discard = False
            self._cond.notify()
        if discard:
            self._module.close_session(pooled.session.handle)
        if release_module:
            _release_module(self._module)

    def _relogin(self) -> None:
        """Log in again after the token reported the user logged out (e.g. another process)."""
        pooled = self._login()
        with self._cond:
            if self._closed:
                discard = True
            else:
                self._all.append(pooled)
                self._idle.append(pooled)
                discard = False
        if discard:
            self._module.close_session(pooled.session.handle)

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(pooled, …)`` on a pooled session, mapping PKCS#11 errors to domain errors."""
        for attempt in range(2):
            try:
                with self._session() as pooled, self._guard:
                    return fn(pooled, *args, **kwargs)
            except p11e.UserNotLoggedIn:
                if attempt == 0:
                    self._relogin()
                    continue
                raise KeyStoreUnavailable(
                    f"PKCS#11 token {self._token_label!r} reports the user is not logged in"
                ) from None
            except _BROKEN_SESSION as exc:
                raise KeyStoreUnavailable(
                    f"PKCS#11 token {self._token_label!r} is unavailable: {type(exc).__name__}"
                ) from None
            except p11e.PKCS11Error as exc:
                raise KeyStoreUnavailable(
                    f"PKCS#11 operation on token {self._token_label!r} failed: {type(exc).__name__}"
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    # --- object look-up (run inside _call) -------------------------------------------------

    @staticmethod
    def _find(pooled: _PooledSession, object_class: ObjectClass, cka_id: bytes) -> list[Any]:
        return list(
            pooled.session.get_objects({Attribute.CLASS: object_class, Attribute.ID: cka_id})
        )

    def _private_key(self, pooled: _PooledSession, key_id: str, *, fresh: bool = False) -> Any:
        now = time.monotonic()
        if not fresh:
            cached = pooled.keys.get(key_id)
            if cached is not None and cached[1] > now:
                return cached[0]
        cka_id = _cka_id(key_id)
        found = self._find(pooled, ObjectClass.PRIVATE_KEY, cka_id)
        if not found:
            pooled.keys.pop(key_id, None)
            self._refs.pop(key_id, None)
            if self._find(pooled, ObjectClass.PUBLIC_KEY, cka_id):
                raise KeyDestroyed(key_id)
            raise KeyNotFound(key_id)
        if len(found) > 1:
            raise KeyStoreUnavailable(f"more than one private key on the token has id {key_id}")
        pooled.keys[key_id] = (found[0], now + self._key_cache_seconds)
        return found[0]

    def _ref_in(self, pooled: _PooledSession, key_id: str) -> KeyRef:
        """The :class:`KeyRef` of a live key, read from the token."""
        private = self._private_key(pooled, key_id, fresh=True)
        publics = self._find(pooled, ObjectClass.PUBLIC_KEY, _cka_id(key_id))
        if not publics:
            raise KeyStoreUnavailable(
                f"key {key_id} has no public key object on the token; govtrust needs one"
            )
        algorithm, der = _public_key_info(publics[0], self._sm2.key_type)
        ref = KeyRef(
            key_id=key_id,
            label=str(private[Attribute.LABEL]),
            algorithm=algorithm,
            public_key_der=der,
            created_at=created_at_from_key_id(key_id) or _EPOCH,
        )
        self._refs[key_id] = ref
        return ref

    # --- public API -------------------------------------------------------------------------

    def generate(self, label: str, algorithm: KeyAlgorithm | str) -> KeyRef:
        """Generate a sensitive, non-extractable key pair on the token."""
        label = validate_label(label)
        if len(label.encode("utf-8")) > 255:
            raise InvalidLabel.field("label", "a key label must be at most 255 UTF-8 bytes")
        algo = parse_algorithm(algorithm)
        spec = ALGORITHMS[algo]
        key_id, _created = new_key_id()
        cka_id = bytes.fromhex(key_id)
        private_template: dict[Attribute, Any] = {
            Attribute.TOKEN: True,
            Attribute.PRIVATE: True,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.SIGN: True,
            Attribute.DECRYPT: False,
            Attribute.UNWRAP: False,
            Attribute.DERIVE: False,
        }
        public_template: dict[Attribute, Any] = {
            Attribute.TOKEN: True,
            Attribute.PRIVATE: False,
            Attribute.VERIFY: True,
            Attribute.ENCRYPT: False,
            Attribute.WRAP: False,
        }
        keygen: dict[str, Any] = {}
        if spec.family is KeyFamily.SM2:
            self._require_sm2()
            key_type: Any = self._sm2.key_type
            key_length = None
            keygen["mechanism"] = self._sm2.keygen_mechanism
            public_template[Attribute.EC_PARAMS] = _SM2_EC_PARAMS
        elif spec.family is KeyFamily.EC:
            key_type, key_length = KeyType.EC, None
            public_template[Attribute.EC_PARAMS] = encode_named_curve_parameters(spec.curve or "")
        else:
            key_type, key_length = KeyType.RSA, spec.key_size

        def run(pooled: _PooledSession) -> KeyRef:
            try:
                public, _private = pooled.session.generate_keypair(
                    key_type,
                    key_length,
                    id=cka_id,
                    label=label,
                    store=True,
                    capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
                    public_template=public_template,
                    private_template=private_template,
                    **keygen,
                )
            except (p11e.MechanismInvalid, p11e.DomainParamsInvalid, p11e.KeySizeRange):
                raise UnsupportedAlgorithm.field(
                    "algorithm", f"the PKCS#11 token cannot generate {algo.value} keys"
                ) from None
            _algorithm, der = _public_key_info(public, self._sm2.key_type)
            created_at = created_at_from_key_id(key_id) or _EPOCH
            ref = KeyRef(key_id, label, algo, der, created_at)
            self._refs[key_id] = ref
            return ref

        return cast(KeyRef, self._call(run))

    def sign(
        self,
        ref_or_id: KeyRefOrId,
        data: bytes,
        scheme: SignatureScheme | str,
        *,
        signer_id: bytes | str | None = None,
    ) -> bytes:
        """Hash on the host, sign the digest on the token, return X.509/CMS-ready bytes.

        SM2: Z over ``signer_id`` (default ``1234567812345678``) and ``e = SM3(Z ‖ data)`` are
        computed here; the configured vendor mechanism signs ``e``.
        """
        key_id = key_id_of(ref_or_id)
        ref = self._refs.get(key_id) or self.get(key_id)
        check_scheme(ref.algorithm, scheme)
        check_signer_id(scheme, signer_id)
        mech = _MECHANISMS[str(scheme)]
        mechanism: Any = mech.mechanism
        if mech.kind == "sm2":
            self._require_sm2()
            mechanism = self._sm2.mechanism
            point = sm2.parse_public_key(ref.public_key_der)
            z = sm2.z_value(point, signer_id)
            payload = hashlib.new("sm3", z + data).digest()
        else:
            digest = hashlib.new(mech.digest, data).digest()
            payload = _DIGEST_INFO[mech.digest] + digest if mech.kind == "pkcs1v15" else digest

        def run(pooled: _PooledSession) -> bytes:
            key = self._private_key(pooled, key_id)
            try:
                return bytes(key.sign(payload, mechanism=mechanism, mechanism_param=mech.param))
            except _STALE_HANDLE:  # destroyed or re-created meanwhile: look it up again
                key = self._private_key(pooled, key_id, fresh=True)
                return bytes(key.sign(payload, mechanism=mechanism, mechanism_param=mech.param))

        raw = cast(bytes, self._call(run))
        if mech.kind in ("ecdsa", "sm2"):  # PKCS#11 gives r || s (equal halves); X.509/CMS want DER
            half = len(raw) // 2
            return encode_dss_signature(
                int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
            )
        return raw

    def public_key(self, ref_or_id: KeyRefOrId) -> bytes:
        """SubjectPublicKeyInfo DER (also after the private key is destroyed)."""
        key_id = key_id_of(ref_or_id)
        cka_id = _cka_id(key_id)

        def run(pooled: _PooledSession) -> bytes:
            publics = self._find(pooled, ObjectClass.PUBLIC_KEY, cka_id)
            if not publics:
                raise KeyNotFound(key_id)
            return _public_key_info(publics[0], self._sm2.key_type)[1]

        return cast(bytes, self._call(run))

    def get(self, key_id: str) -> KeyRef:
        """The reference of a live key, read from the token."""
        _cka_id(key_id)
        return cast(KeyRef, self._call(self._ref_in, key_id))

    def list(self) -> list[KeyRef]:
        """Live keys on the token that govtrust can use, oldest first."""

        def run(pooled: _PooledSession) -> list[KeyRef]:
            ids = {
                bytes(obj[Attribute.ID]).hex()
                for obj in pooled.session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})
            }
            refs = []
            for key_id in ids:
                if not key_id:
                    continue
                with contextlib.suppress(UnsupportedAlgorithm, KeyStoreUnavailable, KeyNotFound):
                    refs.append(self._ref_in(pooled, key_id))
            return sorted(refs, key=lambda ref: (ref.created_at, ref.key_id))

        return cast(list[KeyRef], self._call(run))

    def destroy(self, ref_or_id: KeyRefOrId) -> None:
        """Destroy the private key object on the token (idempotent); the public object stays."""
        key_id = key_id_of(ref_or_id)
        cka_id = _cka_id(key_id)

        def run(pooled: _PooledSession) -> None:
            privates = self._find(pooled, ObjectClass.PRIVATE_KEY, cka_id)
            if not privates and not self._find(pooled, ObjectClass.PUBLIC_KEY, cka_id):
                raise KeyNotFound(key_id)
            for private in privates:
                private.destroy()

        try:
            self._call(run)
        finally:
            self._refs.pop(key_id, None)
            with self._cond:
                for pooled in self._all:
                    pooled.keys.pop(key_id, None)

    def generate_escrowed(self, label: str) -> KeyRef:
        """Refused: a token's keys are non-extractable, so none can be enveloped to a holder."""
        raise EscrowNotSupported(
            "the PKCS#11 key store does not escrow encryption keys: its keys are "
            "non-extractable and PKCS#11 has no standard SM2 envelope; run the key management "
            "centre on the soft key store"
        )

    def export_enveloped(self, ref_or_id: KeyRefOrId, recipient_public_key: bytes) -> bytes:
        """Refused (see :meth:`generate_escrowed`)."""
        raise EscrowNotSupported(
            "the PKCS#11 key store holds no escrowed encryption keys and exports no key"
        )

    def ping(self) -> None:
        """A logged-in session can be had from the pool (the module and token answer)."""

        def run(pooled: _PooledSession) -> None:
            # A find on the token is a real round trip through the module and the session.
            list(pooled.session.get_objects({Attribute.LABEL: "govtrust-readiness-probe"}))

        self._call(run)

    def close(self) -> None:
        """Close every session (without logging other stores out) and release the module.

        Sessions borrowed by calls still running are closed when those calls return.
        """
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._borrowed_at_close = len(self._all) - len(self._idle) + self._opening
            idle, self._idle, self._all = self._idle, [], []
            self._cond.notify_all()
            release_now = self._borrowed_at_close == 0
        if os.getpid() != self._pid:
            return  # sessions belong to the parent process
        for pooled in idle:
            pooled.keys.clear()
            self._module.close_session(pooled.session.handle)
        if release_now:
            _release_module(self._module)

    def _require_sm2(self) -> None:
        """:class:`Sm2NotAvailable` unless the SM2 settings are set and the token offers them."""
        missing = self._sm2.missing()
        if missing:
            raise Sm2NotAvailable(
                f"SM2 is not available on PKCS#11 module {self._module_path}: PKCS#11 has no "
                f"standard SM2 mechanism and {', '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not set (the HSM vendor's constants; "
                "SoftHSM2 has none)"
            )
        if self._sm2_checked:
            return
        with self._guard:
            try:
                offered = {int(m) for m in self._token.slot.get_mechanisms()}
            except p11e.PKCS11Error as exc:
                raise KeyStoreUnavailable(
                    f"cannot list the mechanisms of token {self._token_label!r}: "
                    f"{type(exc).__name__}"
                ) from None
        absent = [
            f"{env}=0x{getattr(self._sm2, name):08x}"
            for name, env in Pkcs11Sm2.SETTINGS
            if name != "key_type" and getattr(self._sm2, name) not in offered
        ]
        if absent:
            raise Sm2NotAvailable(
                f"SM2 is not available on PKCS#11 token {self._token_label!r}: it does not offer "
                f"the configured mechanism(s) {', '.join(absent)}"
            )
        self._sm2_checked = True

    @property
    def thread_safe_module(self) -> bool:
        """Whether the module accepted OS locking (if not, calls to it are serialised)."""
        return self._module.thread_safe
