"""PKCS#11-specific behaviour on a SoftHSM2 token the tests initialise themselves."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pkcs11
import pytest
from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11.util.ec import encode_named_curve_parameters

from hsm import (
    KeyAlgorithm,
    KeyStoreLoginFailed,
    KeyStoreUnavailable,
    Pkcs11KeyStore,
    SignatureScheme,
    TokenNotFound,
)
from tests.hsm.conftest import SoftHsmToken, token_files
from tests.hsm.test_keystore import MESSAGE, verify
from tests.unchanged import unchanged


@pytest.fixture
def raw_session(pkcs11_store: Pkcs11KeyStore, softhsm_token: SoftHsmToken) -> Iterator[object]:
    """A python-pkcs11 session beside the store (logged in through the store's login)."""
    # the store loads the module by its real path; python-pkcs11 caches libraries by that string
    lib = pkcs11.lib(os.path.realpath(softhsm_token.module))
    token = lib.get_token(token_label=softhsm_token.label)
    session = token.open(rw=True)
    yield session
    session.close()  # no C_Logout: opened without a PIN


def test_private_keys_are_sensitive_and_not_extractable(
    pkcs11_store: Pkcs11KeyStore, raw_session: pkcs11.Session, softhsm_token: SoftHsmToken
) -> None:
    for algorithm in (KeyAlgorithm.EC_P256, KeyAlgorithm.RSA_2048):
        ref = pkcs11_store.generate(f"custody {algorithm.value}", algorithm)
        private = raw_session.get_key(
            object_class=ObjectClass.PRIVATE_KEY, id=bytes.fromhex(ref.key_id)
        )
        attributes = private.get_attributes(
            [
                Attribute.TOKEN,
                Attribute.PRIVATE,
                Attribute.SENSITIVE,
                Attribute.EXTRACTABLE,
                Attribute.ALWAYS_SENSITIVE,
                Attribute.NEVER_EXTRACTABLE,
                Attribute.LOCAL,
                Attribute.SIGN,
                Attribute.DECRYPT,
                Attribute.UNWRAP,
                Attribute.DERIVE,
                Attribute.LABEL,
            ]
        )
        assert attributes == {
            Attribute.TOKEN: True,
            Attribute.PRIVATE: True,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.ALWAYS_SENSITIVE: True,
            Attribute.NEVER_EXTRACTABLE: True,
            Attribute.LOCAL: True,
            Attribute.SIGN: True,
            Attribute.DECRYPT: False,
            Attribute.UNWRAP: False,
            Attribute.DERIVE: False,
            Attribute.LABEL: f"custody {algorithm.value}",
        }
        secret = (
            Attribute.VALUE if algorithm is KeyAlgorithm.EC_P256 else Attribute.PRIVATE_EXPONENT
        )
        with (
            unchanged(None, pkcs11_store, token_files(softhsm_token)),
            pytest.raises(pkcs11.exceptions.AttributeSensitive),
        ):
            private[secret]


def test_wrong_pin_is_a_clear_error(fresh_softhsm_token: SoftHsmToken) -> None:
    token = fresh_softhsm_token
    # SoftHSM2 counts the failed login in the token's own token.object (its flags and PIN
    # counters); the key objects beside it must stay as they were
    counters = [folder / "token.object" for folder in token_files(token).iterdir()]
    with (
        unchanged(None, None, token_files(token), allow=counters),
        pytest.raises(KeyStoreLoginFailed, match=f"wrong PIN for PKCS#11 token '{token.label}'"),
    ):
        Pkcs11KeyStore(token.module, token.label, "0000")
    # the right PIN still works afterwards (the failure released the module cleanly)
    store = Pkcs11KeyStore(token.module, token.label, token.pin)
    try:
        assert store.list() == []
    finally:
        store.close()


def test_missing_module_is_a_clear_error(softhsm_token: SoftHsmToken) -> None:
    with (
        unchanged(None, None, token_files(softhsm_token)),
        pytest.raises(
            KeyStoreUnavailable, match=r"PKCS#11 module /nonexistent/libnope\.so does not"
        ),
    ):
        Pkcs11KeyStore("/nonexistent/libnope.so", softhsm_token.label, softhsm_token.pin)
    with (
        unchanged(None, None, token_files(softhsm_token)),
        pytest.raises(KeyStoreUnavailable, match="cannot load or initialise PKCS#11 module"),
    ):
        Pkcs11KeyStore("/etc/hostname", softhsm_token.label, softhsm_token.pin)


def test_unknown_token_label_is_a_clear_error(softhsm_token: SoftHsmToken) -> None:
    with unchanged(None, None, token_files(softhsm_token)), pytest.raises(TokenNotFound) as info:
        Pkcs11KeyStore(softhsm_token.module, "no-such-token", softhsm_token.pin)
    assert "no PKCS#11 token labelled 'no-such-token'" in info.value.message
    assert repr(softhsm_token.label) in info.value.message  # lists the tokens that are there


def test_module_is_reinitialised_for_concurrent_threads(pkcs11_store: Pkcs11KeyStore) -> None:
    assert pkcs11_store.thread_safe_module  # SoftHSM2 accepted CKF_OS_LOCKING_OK


@pytest.mark.parametrize("pool_size", [8, 2])
def test_concurrent_signing_from_threads(softhsm_token: SoftHsmToken, pool_size: int) -> None:
    store = Pkcs11KeyStore(
        softhsm_token.module, softhsm_token.label, softhsm_token.pin, pool_size=pool_size
    )
    try:
        ec_key = store.generate("concurrent ec", KeyAlgorithm.EC_P256)
        rsa_key = store.generate("concurrent rsa", KeyAlgorithm.RSA_2048)
        results: list[list[tuple[int, bytes]]] = [[] for _ in range(8)]
        errors: list[BaseException] = []
        start = threading.Barrier(8)

        def worker(index: int) -> None:
            try:
                start.wait()
                for i in range(200):
                    message = f"{index}:{i}".encode()
                    if index == 0 and i % 20 == 0:  # some RSA-PSS in the mix
                        rsa_sig = store.sign(rsa_key, message, SignatureScheme.RSA_PSS_SHA256)
                        verify(rsa_key, rsa_sig, message, SignatureScheme.RSA_PSS_SHA256)
                    results[index].append(
                        (i, store.sign(ec_key, message, SignatureScheme.ECDSA_SHA256))
                    )
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not errors, errors
        assert sum(len(r) for r in results) == 8 * 200
        for index, signatures in enumerate(results):
            for i, signature in signatures:
                verify(ec_key, signature, f"{index}:{i}".encode(), SignatureScheme.ECDSA_SHA256)
    finally:
        store.close()


def test_two_stores_on_one_token_do_not_log_each_other_out(softhsm_token: SoftHsmToken) -> None:
    first = Pkcs11KeyStore(softhsm_token.module, softhsm_token.label, softhsm_token.pin)
    second = Pkcs11KeyStore(softhsm_token.module, softhsm_token.label, softhsm_token.pin)
    try:
        ref = first.generate("shared", KeyAlgorithm.EC_P256)
        first.close()  # must not C_Logout the second store's sessions
        signature = second.sign(ref.key_id, MESSAGE, SignatureScheme.ECDSA_SHA256)
        verify(ref, signature, MESSAGE, SignatureScheme.ECDSA_SHA256)
    finally:
        first.close()
        second.close()
    # a closed store cannot list: the token's object files show no key was made or destroyed
    with (
        unchanged(None, None, token_files(softhsm_token)),
        pytest.raises(KeyStoreUnavailable, match="has been closed"),
    ):
        second.sign(ref.key_id, MESSAGE, SignatureScheme.ECDSA_SHA256)


def test_keys_provisioned_outside_govtrust_are_usable(
    pkcs11_store: Pkcs11KeyStore, raw_session: pkcs11.Session
) -> None:
    """A key made on the token by an HSM operator (any CKA_ID) is listed and can sign."""
    raw_session.generate_keypair(
        KeyType.EC,
        id=b"\xca\xfe",
        label="ceremony root",
        store=True,
        public_template={Attribute.EC_PARAMS: encode_named_curve_parameters("secp384r1")},
        private_template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False},
    )
    ref = next(r for r in pkcs11_store.list() if r.key_id == "cafe")
    assert ref.label == "ceremony root"
    assert ref.algorithm is KeyAlgorithm.EC_P384
    signature = pkcs11_store.sign("cafe", MESSAGE, SignatureScheme.ECDSA_SHA384)
    verify(ref, signature, MESSAGE, SignatureScheme.ECDSA_SHA384)
    pkcs11_store.destroy("cafe")
    raw_session.get_key(object_class=ObjectClass.PUBLIC_KEY, id=b"\xca\xfe").destroy()


def test_destroy_in_another_store_is_seen(softhsm_token: SoftHsmToken) -> None:
    a = Pkcs11KeyStore(softhsm_token.module, softhsm_token.label, softhsm_token.pin)
    b = Pkcs11KeyStore(softhsm_token.module, softhsm_token.label, softhsm_token.pin)
    try:
        ref = a.generate("destroyed elsewhere", KeyAlgorithm.EC_P256)
        a.sign(ref, MESSAGE, SignatureScheme.ECDSA_SHA256)  # handle cached in a's session
        b.destroy(ref)
        from hsm import KeyDestroyed

        with unchanged(None, a, token_files(softhsm_token)), pytest.raises(KeyDestroyed):
            a.sign(ref, MESSAGE, SignatureScheme.ECDSA_SHA256)
    finally:
        a.close()
        b.close()
