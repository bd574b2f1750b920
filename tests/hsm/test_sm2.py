"""SM2 key custody (GB/T 32918, issue 16 item 1): the standard's sample, openssl both ways,
strict parsing with specific errors, the soft store's SM2 keys and the PKCS#11 refusal."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import grpc
import pkcs11
import pytest
from asn1crypto import keys
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from govtrust.config import ConfigError, load_settings, pkcs11_constant
from govtrust.db import Database
from govtrust.rpc.status import classify
from hsm import (
    InvalidSm2PublicKey,
    InvalidSm2Signature,
    InvalidSm2SignerId,
    KeyAlgorithm,
    KeyDestroyed,
    KeyUnwrapFailed,
    MasterKey,
    Pkcs11KeyStore,
    SignatureScheme,
    Sm2NotAvailable,
    SoftKeyStore,
    UnsupportedScheme,
    default_scheme,
    open_keystore,
    schemes_for,
)
from hsm.models import HsmKey
from hsm.pkcs11 import Pkcs11Sm2
from hsm.signers import signed_digest_algorithm
from hsm.sm2 import (
    DEFAULT_SIGNER_ID,
    N,
    Sm2PrivateKey,
    decode_signature,
    encode_public_key,
    parse_public_key,
    verify_sm2_signature,
    z_value,
)
from hsm.soft import WRAP_PURPOSE, _aad
from tests.conftest import require_tool
from tests.hsm.conftest import SoftHsmToken, token_files
from tests.unchanged import unchanged

SM2 = SignatureScheme.SM2_SM3

# GB/T 32918.5-2017 / GM/T 0003.5-2012 annex A, signature example on the recommended curve:
# message "message digest", signer ID 1234567812345678.
SAMPLE_D = "3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8"
SAMPLE_XA = "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"
SAMPLE_YA = "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13"
SAMPLE_Z = "B2E14C5C79C6DF5B85F4FE7ED8DB7A262B9DA7E07CCB0EA9F4747B8CCDA8A4F3"
SAMPLE_E = "F0B43E94BA45ACCAACE692ED534382EB17E6AB5A19CE7B31F4486FDFC0D28640"
SAMPLE_K = "59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21"
SAMPLE_R = "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3"
SAMPLE_S = "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA"
SAMPLE_MESSAGE = b"message digest"
SAMPLE_POINT = bytes.fromhex("04" + SAMPLE_XA + SAMPLE_YA)
SAMPLE_SIGNATURE = encode_dss_signature(int(SAMPLE_R, 16), int(SAMPLE_S, 16))

MESSAGE = b"govtrust SM2 custody test \xe5\x9b\xbd\xe5\xaf\x86"
OTHER_ID = b"alice@example.gov.cn"


# --- the standard's sample -----------------------------------------------------------------------


def test_sample_public_key_z_and_digest() -> None:
    key = Sm2PrivateKey(bytes.fromhex(SAMPLE_D))
    assert key.public_point == SAMPLE_POINT
    z = z_value(SAMPLE_POINT, "1234567812345678")
    assert z.hex().upper() == SAMPLE_Z
    assert z_value(SAMPLE_POINT) == z  # the default signer ID
    assert hashlib.new("sm3", z + SAMPLE_MESSAGE).hexdigest().upper() == SAMPLE_E


def test_sample_signature_with_the_standards_k() -> None:
    key = Sm2PrivateKey(bytes.fromhex(SAMPLE_D), random_source=lambda n: bytes.fromhex(SAMPLE_K))
    signature = key.sign(SAMPLE_MESSAGE)
    assert decode_signature(signature).hex().upper() == SAMPLE_R + SAMPLE_S
    assert signature == SAMPLE_SIGNATURE


def test_sample_signature_verifies_and_a_changed_one_does_not() -> None:
    spki = encode_public_key(SAMPLE_POINT)
    verify_sm2_signature(spki, None, SAMPLE_MESSAGE, SAMPLE_SIGNATURE)
    verify_sm2_signature(spki, "1234567812345678", SAMPLE_MESSAGE, SAMPLE_SIGNATURE)
    with pytest.raises(InvalidSm2Signature, match="does not verify"):
        verify_sm2_signature(spki, None, b"message digesT", SAMPLE_SIGNATURE)
    bad_s = encode_dss_signature(int(SAMPLE_R, 16), int(SAMPLE_S, 16) + 1)
    with pytest.raises(InvalidSm2Signature, match="does not verify"):
        verify_sm2_signature(spki, None, SAMPLE_MESSAGE, bad_s)


def test_public_key_info_is_id_ec_public_key_with_the_sm2_curve() -> None:
    info = keys.PublicKeyInfo.load(encode_public_key(SAMPLE_POINT))
    assert info["algorithm"]["algorithm"].dotted == "1.2.840.10045.2.1"
    assert info["algorithm"]["parameters"].chosen.dotted == "1.2.156.10197.1.301"
    assert info["public_key"].native == SAMPLE_POINT
    assert parse_public_key(info.dump()) == SAMPLE_POINT


# --- openssl both ways ---------------------------------------------------------------------------


def _openssl(*args: str | Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [require_tool("openssl"), *map(str, args)], input=stdin, capture_output=True, timeout=60
    )


def _openssl_verify(
    tmp_path: Path, spki_der: bytes, message: bytes, signature: bytes, signer_id: bytes
) -> bool:
    (tmp_path / "pub.der").write_bytes(spki_der)
    (tmp_path / "msg").write_bytes(message)
    (tmp_path / "sig").write_bytes(signature)
    result = _openssl(
        "pkeyutl", "-verify", "-pubin", "-keyform", "DER", "-inkey", tmp_path / "pub.der",
        "-rawin", "-digest", "sm3", "-pkeyopt", f"distid:{signer_id.decode()}",
        "-in", tmp_path / "msg", "-sigfile", tmp_path / "sig",
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr
    return result.returncode == 0 and b"Signature Verified Successfully" in result.stdout


def test_openssl_verifies_what_the_soft_store_signs(
    soft_store: SoftKeyStore, tmp_path: Path
) -> None:
    ref = soft_store.generate("sm2 for openssl", KeyAlgorithm.SM2)
    default = soft_store.sign(ref, MESSAGE, SM2)
    other = soft_store.sign(ref, MESSAGE, SM2, signer_id=OTHER_ID)
    assert _openssl_verify(tmp_path, ref.public_key_der, MESSAGE, default, DEFAULT_SIGNER_ID)
    assert _openssl_verify(tmp_path, ref.public_key_der, MESSAGE, other, OTHER_ID)
    # and openssl agrees that the signer ID matters
    assert not _openssl_verify(tmp_path, ref.public_key_der, MESSAGE, other, DEFAULT_SIGNER_ID)
    assert not _openssl_verify(
        tmp_path, ref.public_key_der, MESSAGE + b"!", default, b"1234567812345678"
    )


def test_govtrust_verifies_what_openssl_signs(tmp_path: Path) -> None:
    key_pem = tmp_path / "key.pem"
    assert _openssl("genpkey", "-algorithm", "SM2", "-out", key_pem).returncode == 0
    public = _openssl("pkey", "-in", key_pem, "-pubout", "-outform", "DER")
    assert public.returncode == 0, public.stderr
    spki = public.stdout
    (tmp_path / "msg").write_bytes(MESSAGE)
    signatures = {}
    for signer_id in (DEFAULT_SIGNER_ID, OTHER_ID):
        signed = _openssl(
            "pkeyutl", "-sign", "-inkey", key_pem, "-rawin", "-digest", "sm3",
            "-pkeyopt", f"distid:{signer_id.decode()}", "-in", tmp_path / "msg",
        )  # fmt: skip
        assert signed.returncode == 0, signed.stderr
        signatures[signer_id] = signed.stdout
        verify_sm2_signature(spki, signer_id, MESSAGE, signed.stdout)
    verify_sm2_signature(spki, None, MESSAGE, signatures[DEFAULT_SIGNER_ID])
    # made with the default ID, checked with another: named as a signer-ID mismatch
    with unchanged(None, None, tmp_path), pytest.raises(InvalidSm2SignerId, match="default"):
        verify_sm2_signature(spki, OTHER_ID, MESSAGE, signatures[DEFAULT_SIGNER_ID])
    # made with another ID, checked with the default: it does not verify
    with (
        unchanged(None, None, tmp_path),
        pytest.raises(InvalidSm2Signature, match="signer ID and message"),
    ):
        verify_sm2_signature(spki, None, MESSAGE, signatures[OTHER_ID])
    with unchanged(None, None, tmp_path), pytest.raises(InvalidSm2Signature):
        verify_sm2_signature(spki, b"bob@example", MESSAGE, signatures[OTHER_ID])


# --- bad input: each a specific INVALID_ARGUMENT -------------------------------------------------


def _spki(point: bytes, curve: str = "1.2.156.10197.1.301") -> bytes:
    return bytes(
        keys.PublicKeyInfo(
            {
                "algorithm": {
                    "algorithm": "ec",
                    "parameters": keys.ECDomainParameters(name="named", value=curve),
                },
                "public_key": point,
            }
        ).dump()
    )


def test_truncated_off_curve_and_foreign_keys_are_refused() -> None:
    good = _spki(SAMPLE_POINT)
    cases: list[tuple[bytes, str]] = [
        (good[:-1], "truncated or malformed"),  # the DER itself cut short
        (good + b"\x00", "truncated or malformed"),  # trailing data
        (_spki(SAMPLE_POINT[:-1]), r"truncated or malformed \(64 bytes"),
        (_spki(b"\x04"), r"truncated or malformed \(1 bytes"),
        (_spki(SAMPLE_POINT[:-1] + bytes([SAMPLE_POINT[-1] ^ 1])), "not on the SM2 curve"),
        (_spki(b"\x02" + SAMPLE_POINT[1:33]), "compressed SM2 point"),
        (_spki(b"\x05" + SAMPLE_POINT[1:]), "does not start with 0x04"),
        (_spki(b"\x04" + b"\xff" * 64), "not below p"),
    ]
    p256 = ec.generate_private_key(ec.SECP256R1()).public_key()
    cases.append(
        (
            p256.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            r"a P-256 \(secp256r1\) key is not an SM2 key",
        )
    )
    # the P-256 key's point presented under the SM2 curve OID: not on the SM2 curve
    p256_point = p256.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    cases.append((_spki(p256_point), "not on the SM2 curve"))
    for spki, reason in cases:
        with pytest.raises(InvalidSm2PublicKey, match=reason) as caught:
            verify_sm2_signature(spki, None, SAMPLE_MESSAGE, SAMPLE_SIGNATURE)
        assert classify(caught.value).code is grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.violations[0].field == "public_key"


def test_malformed_and_out_of_range_signatures_are_refused() -> None:
    spki = encode_public_key(SAMPLE_POINT)
    r, s = int(SAMPLE_R, 16), int(SAMPLE_S, 16)
    non_minimal = bytes.fromhex("3047022100") + SAMPLE_SIGNATURE[4:]  # r with a needless 0x00
    raw = bytes.fromhex(SAMPLE_R + SAMPLE_S)
    cases: list[tuple[bytes, str]] = [
        (SAMPLE_SIGNATURE[:-1], "DER SEQUENCE"),
        (raw, "DER SEQUENCE"),  # r || s is not what the standard's DER form is
        (b"", "DER SEQUENCE"),
        (encode_dss_signature(0, s), "out of range"),
        (encode_dss_signature(r, N), "out of range"),
        (encode_dss_signature(r, s + N), "out of range"),
        (non_minimal, "DER"),
        (SAMPLE_SIGNATURE + b"\x00", "DER"),
    ]
    for signature, reason in cases:
        with pytest.raises(InvalidSm2Signature, match=reason) as caught:
            verify_sm2_signature(spki, None, SAMPLE_MESSAGE, signature)
        assert classify(caught.value).code is grpc.StatusCode.INVALID_ARGUMENT


def test_bad_signer_ids_are_refused(database: Database, soft_store: SoftKeyStore) -> None:
    spki = encode_public_key(SAMPLE_POINT)
    for signer_id, reason in ((b"", "must not be empty"), (b"x" * 8192, "at most 8191 bytes")):
        with (
            unchanged(database, soft_store),
            pytest.raises(InvalidSm2SignerId, match=reason) as caught,
        ):
            verify_sm2_signature(spki, signer_id, SAMPLE_MESSAGE, SAMPLE_SIGNATURE)
        assert classify(caught.value).code is grpc.StatusCode.INVALID_ARGUMENT
    ref = soft_store.generate("sm2", KeyAlgorithm.SM2)
    with unchanged(database, soft_store), pytest.raises(InvalidSm2SignerId, match="not be empty"):
        soft_store.sign(ref, MESSAGE, SM2, signer_id="")
    # the longest ID ENTL can express still works
    longest = b"y" * 8191
    verify_sm2_signature(
        ref.public_key_der, longest, MESSAGE, soft_store.sign(ref, MESSAGE, SM2, signer_id=longest)
    )
    p256 = soft_store.generate("p256", KeyAlgorithm.EC_P256)
    with unchanged(database, soft_store), pytest.raises(InvalidSm2SignerId, match="SM2 sig"):
        soft_store.sign(p256, MESSAGE, SignatureScheme.ECDSA_SHA256, signer_id=OTHER_ID)
    with unchanged(database, soft_store), pytest.raises(UnsupportedScheme, match="fit a sm2"):
        soft_store.sign(ref, MESSAGE, SignatureScheme.ECDSA_SHA256)
    with unchanged(database, soft_store), pytest.raises(UnsupportedScheme, match="a ec-p256"):
        soft_store.sign(p256, MESSAGE, SM2)


@st.composite
def _mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """``seed`` with a few bytes changed, cut short or extended."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut]) + draw(st.binary(max_size=4)) if draw(st.booleans()) else bytes(data)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(spki=_mutated(encode_public_key(SAMPLE_POINT)), signature=_mutated(SAMPLE_SIGNATURE))
def test_mangled_keys_and_signatures_get_only_the_specific_errors(
    spki: bytes, signature: bytes
) -> None:
    error: Exception | None = None
    try:
        verify_sm2_signature(spki, None, SAMPLE_MESSAGE, signature)
    except (InvalidSm2PublicKey, InvalidSm2Signature, InvalidSm2SignerId) as exc:
        error = exc
    if error is None:  # accepted: then it is exactly the sample (canonical DER, checked point)
        assert spki == encode_public_key(SAMPLE_POINT) and signature == SAMPLE_SIGNATURE
    else:
        assert classify(error).code is grpc.StatusCode.INVALID_ARGUMENT


# --- the soft key store --------------------------------------------------------------------------


def test_sm2_tables_and_identifiers() -> None:
    assert schemes_for(KeyAlgorithm.SM2) == (SM2,)
    assert default_scheme("sm2") is SM2
    assert signed_digest_algorithm(SM2)["algorithm"].dotted == "1.2.156.10197.1.501"
    assert signed_digest_algorithm(SM2)["parameters"].native is None


def test_soft_store_generates_wraps_uses_and_destroys_sm2_keys(
    database: Database, master_key: MasterKey, tmp_path: Path
) -> None:
    store = SoftKeyStore(database, master_key)
    ref = store.generate("seal sm2", KeyAlgorithm.SM2)
    assert ref.algorithm is KeyAlgorithm.SM2 and store.public_key(ref) == ref.public_key_der
    point = parse_public_key(ref.public_key_der)
    verify_sm2_signature(ref.public_key_der, None, MESSAGE, store.sign(ref, MESSAGE, SM2))
    verify_sm2_signature(
        ref.public_key_der,
        OTHER_ID,
        MESSAGE,
        store.sign(ref, MESSAGE, "sm2-sm3", signer_id=OTHER_ID),
    )
    # randomised k: two signatures differ, both verify
    assert store.sign(ref, MESSAGE, SM2) != store.sign(ref, MESSAGE, SM2)
    store.close()

    # at rest: a PKCS#8 SM2 key wrapped under the master key; openssl reads the unwrapped form
    with database.read() as session:
        row = session.scalars(select(HsmKey).where(HsmKey.key_id == ref.key_id)).one()
    assert row.algorithm == "sm2" and row.wrapped_key is not None and row.wrap_nonce is not None
    pkcs8 = AESGCM(master_key.derive_key(WRAP_PURPOSE)).decrypt(
        row.wrap_nonce, row.wrapped_key, _aad(row.key_id, row.algorithm)
    )
    private = Sm2PrivateKey.from_pkcs8(pkcs8)
    assert private.public_point == point
    assert private.private_value not in row.wrapped_key
    (tmp_path / "k.der").write_bytes(pkcs8)
    text = _openssl("pkey", "-inform", "DER", "-in", tmp_path / "k.der", "-text", "-noout")
    assert text.returncode == 0 and b"ASN1 OID: SM2" in text.stdout, text.stderr
    pub = _openssl(
        "pkey", "-inform", "DER", "-in", tmp_path / "k.der", "-pubout", "-outform", "DER"
    )
    assert pub.stdout == ref.public_key_der

    # a new store (cold cache) unwraps it and signs; another master key cannot
    reopened = SoftKeyStore(database, master_key)
    verify_sm2_signature(ref.public_key_der, None, MESSAGE, reopened.sign(ref.key_id, MESSAGE, SM2))
    assert reopened.get(ref.key_id) == ref
    with unchanged(database, reopened), pytest.raises(KeyUnwrapFailed):
        SoftKeyStore(database, MasterKey.generate()).sign(ref, MESSAGE, SM2)

    # relabelled as another algorithm, the wrapped key fails to unwrap (the AAD binds it)
    with database.transaction() as session:
        session.execute(
            update(HsmKey).where(HsmKey.key_id == ref.key_id).values(algorithm="ec-p256")
        )
    with unchanged(database, reopened), pytest.raises(KeyUnwrapFailed):
        SoftKeyStore(database, master_key).sign(ref, MESSAGE, SignatureScheme.ECDSA_SHA256)
    with database.transaction() as session:
        session.execute(update(HsmKey).where(HsmKey.key_id == ref.key_id).values(algorithm="sm2"))

    reopened.destroy(ref)
    with unchanged(database, reopened), pytest.raises(KeyDestroyed):
        reopened.sign(ref, MESSAGE, SM2)
    with unchanged(database, reopened), pytest.raises(KeyDestroyed):
        SoftKeyStore(database, master_key).sign(ref, MESSAGE, SM2, signer_id=OTHER_ID)
    assert reopened.public_key(ref) == ref.public_key_der  # old signatures stay checkable
    assert ref.key_id not in {r.key_id for r in reopened.list()}
    with database.read() as session:
        row = session.scalars(select(HsmKey).where(HsmKey.key_id == ref.key_id)).one()
    assert row.wrapped_key is None and row.destroyed_at is not None
    reopened.close()


def test_from_pkcs8_refuses_other_keys() -> None:
    p256 = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ValueError, match="not an SM2 private key"):
        Sm2PrivateKey.from_pkcs8(p256)
    with pytest.raises(ValueError):
        Sm2PrivateKey(b"\x00" * 32)
    with pytest.raises(ValueError):
        Sm2PrivateKey((N - 1).to_bytes(32, "big"))


# --- PKCS#11: refused cleanly where the module has no SM2 (SoftHSM2) -----------------------------


def test_pkcs11_without_sm2_settings_is_failed_precondition(
    pkcs11_store: Pkcs11KeyStore, softhsm_token: SoftHsmToken
) -> None:
    files = token_files(softhsm_token)
    with unchanged(None, pkcs11_store, files), pytest.raises(Sm2NotAvailable) as caught:
        pkcs11_store.generate("sm2 on softhsm", KeyAlgorithm.SM2)
    message = caught.value.message
    for setting in (
        "GOVTRUST_PKCS11_SM2_KEY_TYPE",
        "GOVTRUST_PKCS11_SM2_KEYGEN_MECHANISM",
        "GOVTRUST_PKCS11_SM2_MECHANISM",
    ):
        assert setting in message
    assert classify(caught.value).code is grpc.StatusCode.FAILED_PRECONDITION
    ec_key = pkcs11_store.generate("ec beside sm2", KeyAlgorithm.EC_P256)
    with unchanged(None, pkcs11_store, files), pytest.raises(UnsupportedScheme):
        pkcs11_store.sign(ec_key, MESSAGE, SM2)
    with unchanged(None, pkcs11_store, files), pytest.raises(InvalidSm2SignerId):
        pkcs11_store.sign(ec_key, MESSAGE, SignatureScheme.ECDSA_SHA256, signer_id=OTHER_ID)
    pkcs11_store.destroy(ec_key)


def test_pkcs11_key_on_the_sm2_curve_is_listed_as_sm2_and_never_signs_ecdsa(
    pkcs11_store: Pkcs11KeyStore, softhsm_token: SoftHsmToken
) -> None:
    """SoftHSM2 makes an EC key on the SM2 curve (CKM_EC_KEY_PAIR_GEN); plain ECDSA on that curve
    is not SM2, so the store lists it as SM2 and refuses both ECDSA and (without the vendor
    mechanism) SM2."""
    lib = pkcs11.lib(os.path.realpath(softhsm_token.module))
    session = lib.get_token(token_label=softhsm_token.label).open(rw=True)
    try:
        session.generate_keypair(
            pkcs11.KeyType.EC,
            id=b"\x5a\x02",
            label="sm2-curve key",
            store=True,
            public_template={pkcs11.Attribute.EC_PARAMS: bytes.fromhex("06082a811ccf5501822d")},
            private_template={pkcs11.Attribute.SENSITIVE: True},
        )
        ref = next(r for r in pkcs11_store.list() if r.key_id == "5a02")
        assert ref.algorithm is KeyAlgorithm.SM2
        assert len(parse_public_key(ref.public_key_der)) == 65  # a valid SM2 SPKI
        files = token_files(softhsm_token)
        with (
            unchanged(None, pkcs11_store, files),
            pytest.raises(UnsupportedScheme, match="does not fit a sm2 key"),
        ):
            pkcs11_store.sign(ref, MESSAGE, SignatureScheme.ECDSA_SHA256)
        with unchanged(None, pkcs11_store, files), pytest.raises(Sm2NotAvailable):
            pkcs11_store.sign(ref, MESSAGE, SM2, signer_id=OTHER_ID)
    finally:
        pkcs11_store.destroy("5a02")
        for obj in session.get_objects({pkcs11.Attribute.ID: b"\x5a\x02"}):
            obj.destroy()
        session.close()  # no C_Logout: opened without a PIN


def test_pkcs11_with_constants_the_token_lacks_names_them(
    softhsm_token: SoftHsmToken, database: Database
) -> None:
    store = open_keystore(
        "pkcs11",
        database=database,
        master_key=MasterKey.generate(),
        pkcs11_module=softhsm_token.module,
        pkcs11_token_label=softhsm_token.label,
        pkcs11_pin=softhsm_token.pin,
        pkcs11_sm2_key_type=0x80000001,
        pkcs11_sm2_keygen_mechanism=0x80000100,
        pkcs11_sm2_mechanism=0x80000101,
    )
    try:
        assert isinstance(store, Pkcs11KeyStore)
        files = token_files(softhsm_token)
        with unchanged(database, store, files), pytest.raises(Sm2NotAvailable) as caught:
            store.generate("sm2", "sm2")
        assert "GOVTRUST_PKCS11_SM2_KEYGEN_MECHANISM=0x80000100" in caught.value.message
        assert "GOVTRUST_PKCS11_SM2_MECHANISM=0x80000101" in caught.value.message
        assert "KEY_TYPE" not in caught.value.message
    finally:
        store.close()
    partial = Pkcs11Sm2(key_type=0x80000001)
    assert partial.missing() == [
        "GOVTRUST_PKCS11_SM2_KEYGEN_MECHANISM",
        "GOVTRUST_PKCS11_SM2_MECHANISM",
    ]


def test_pkcs11_sm2_settings_are_parsed_and_checked() -> None:
    env = {
        "GOVTRUST_PKCS11_SM2_KEY_TYPE": "0x80000001",
        "GOVTRUST_PKCS11_SM2_KEYGEN_MECHANISM": "2147483904",
        "GOVTRUST_PKCS11_SM2_MECHANISM": "0x80000101",
    }
    settings = load_settings(env=env)
    assert pkcs11_constant(settings.pkcs11_sm2_key_type) == 0x80000001
    assert pkcs11_constant(settings.pkcs11_sm2_keygen_mechanism) == 0x80000100
    assert pkcs11_constant(settings.pkcs11_sm2_mechanism) == 0x80000101
    assert pkcs11_constant(None) is None
    for bad in ("CKM_SM2", "0x1ffffffff", "-1"):
        with pytest.raises(ConfigError, match="pkcs11_sm2_mechanism"):
            load_settings(env={"GOVTRUST_PKCS11_SM2_MECHANISM": bad})


@pytest.mark.parametrize(
    ("message", "digest"),
    [
        # GB/T 32905-2016 annex A, examples 1 and 2 (literals from the standard)
        (b"abc", "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"),
        (b"abcd" * 16, "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"),
    ],
)
def test_sm3_gives_the_standards_examples(message: bytes, digest: str) -> None:
    """SM3 is cryptography's (OpenSSL's); the digest inside SM2, CertIDs, imprints and SES."""
    from cryptography.hazmat.primitives import hashes

    sm3 = hashes.Hash(hashes.SM3())
    sm3.update(message)
    assert sm3.finalize().hex() == digest
