"""Values at rest (hsm.atrest): SM4-GCM beside AES-256-GCM, the scheme recorded per value, and
the setting that chooses it (issue #18 item 3; unknown schemes, item 4)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from govtrust.config import AT_REST_SCHEMES, ConfigError, load_settings
from govtrust.errors import FailedPrecondition
from hsm.atrest import AtRestCipher, AtRestError, AtRestScheme, UnknownScheme, scheme_of
from hsm.master import MasterKey
from idp.pii import (
    BLIND_INDEX_PURPOSE,
    ENCRYPTION_PURPOSES,
    PURPOSE_ID_NUMBER,
    PiiCodec,
    PiiError,
)
from license.vault import SIGNED_DATA, LicenceVault
from tests.unchanged import unchanged

NUMBER = "11010519491231002X"
SCHEMES = [s.value for s in AtRestScheme]


def test_openssl_sm4_gcm_is_rfc_8998() -> None:
    """The SM4-GCM under hsm.atrest (cryptography over OpenSSL) gives RFC 8998 A.1's bytes."""
    key = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    iv = bytes.fromhex("00001234567800000000ABCD")
    aad = bytes.fromhex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2")
    plain = bytes.fromhex(
        "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD"
        "EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA"
    )
    encryptor = Cipher(algorithms.SM4(key), modes.GCM(iv)).encryptor()
    encryptor.authenticate_additional_data(aad)
    sealed = encryptor.update(plain) + encryptor.finalize()
    assert sealed.hex().upper() == (
        "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735"
        "D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D"
    )
    assert encryptor.tag.hex().upper() == "83DE3541E4C2B58177E065A9BF7B62EC"


def test_sm4_values_are_standard_sm4_gcm_under_the_derived_key() -> None:
    """An SM4 value is scheme byte 0x02 || nonce || SM4-GCM(ct || tag), opened here with the
    bare primitive and the key derived under the SM4 purpose (16 bytes)."""
    master = MasterKey.generate()
    cipher = AtRestCipher(master, ENCRYPTION_PURPOSES, "sm4-gcm")
    blob = cipher.encrypt(NUMBER.encode(), b"aad")
    assert blob[0] == 0x02 and len(blob) == 1 + 12 + len(NUMBER) + 16
    key = master.derive_key(ENCRYPTION_PURPOSES[AtRestScheme.SM4_GCM], 16)
    decryptor = Cipher(algorithms.SM4(key), modes.GCM(blob[1:13], blob[-16:])).decryptor()
    decryptor.authenticate_additional_data(b"aad")
    assert decryptor.update(blob[13:-16]) + decryptor.finalize() == NUMBER.encode()


@pytest.mark.parametrize("written", SCHEMES)
@pytest.mark.parametrize("reader", SCHEMES)
def test_any_scheme_reads_every_known_scheme(written: str, reader: str) -> None:
    master = MasterKey.generate()
    blob = PiiCodec.from_master_key(master, written).encrypt(NUMBER, PURPOSE_ID_NUMBER)
    assert scheme_of(blob).value == written
    codec = PiiCodec.from_master_key(master, reader)
    assert codec.decrypt(blob, PURPOSE_ID_NUMBER) == NUMBER
    moved, plain = codec.reencrypt(blob, PURPOSE_ID_NUMBER)
    assert plain == NUMBER and scheme_of(moved).value == reader
    assert (moved is blob) == (written == reader)
    # the blind index does not depend on the scheme (docs/operations.md, At-rest encryption)
    assert codec.blind_index(NUMBER, PURPOSE_ID_NUMBER) == PiiCodec.from_master_key(
        master, written
    ).blind_index(NUMBER, PURPOSE_ID_NUMBER)


def test_each_scheme_has_its_own_key() -> None:
    master = MasterKey.generate()
    purposes = set(ENCRYPTION_PURPOSES.values()) | {BLIND_INDEX_PURPOSE}
    assert len(purposes) == 3
    aes = master.derive_key(ENCRYPTION_PURPOSES[AtRestScheme.AES_256_GCM])
    sm4 = master.derive_key(ENCRYPTION_PURPOSES[AtRestScheme.SM4_GCM], 16)
    assert aes[:16] != sm4
    with pytest.raises(ValueError, match="own"):
        AtRestCipher(master, dict.fromkeys(AtRestScheme, "same/v1"))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_tampered_or_misplaced_values_are_refused(scheme: str) -> None:
    codec = PiiCodec.from_master_key(MasterKey.generate(), scheme)
    blob = codec.encrypt(NUMBER, PURPOSE_ID_NUMBER)
    with pytest.raises(PiiError, match=f"does not decrypt \\({scheme}"):
        codec.decrypt(blob[:-1] + bytes([blob[-1] ^ 1]), PURPOSE_ID_NUMBER)
    with pytest.raises(PiiError, match="too short"):
        codec.decrypt(blob[:20], PURPOSE_ID_NUMBER)


@pytest.mark.parametrize("byte", [0x00, 0x03, 0xFF])
def test_a_value_with_an_unknown_scheme_gets_its_own_error(byte: int) -> None:
    master = MasterKey.generate()
    codec = PiiCodec.from_master_key(master, "sm4-gcm")
    blob = bytes([byte]) + codec.encrypt(NUMBER, PURPOSE_ID_NUMBER)[1:]
    with pytest.raises(UnknownScheme, match=f"unknown at-rest scheme \\(byte 0x{byte:02x}") as e:
        codec.decrypt(blob, PURPOSE_ID_NUMBER)
    assert e.value.byte == byte and isinstance(e.value, FailedPrecondition)
    assert "0x01 aes-256-gcm, 0x02 sm4-gcm" in e.value.message
    with pytest.raises(UnknownScheme):
        codec.reencrypt(blob, PURPOSE_ID_NUMBER)
    vault = LicenceVault(master, "sm4-gcm")
    stored = vault.seal_text("payload", SIGNED_DATA, "ident")
    import base64

    raw = base64.urlsafe_b64decode(stored[4:] + "=" * (-len(stored[4:]) % 4))
    forged = "gt1:" + base64.urlsafe_b64encode(bytes([byte]) + raw[1:]).rstrip(b"=").decode()
    with pytest.raises(UnknownScheme, match=f"signed_data of ident .*0x{byte:02x}"):
        vault.open_text(forged, SIGNED_DATA, "ident")
    with pytest.raises(UnknownScheme):
        vault.scheme_of_text(forged, SIGNED_DATA, "ident")


def test_vault_binds_row_and_column_under_sm4() -> None:
    vault = LicenceVault(MasterKey.generate(), "sm4-gcm")
    stored = vault.seal_text("jws", SIGNED_DATA, "licence-1")
    assert vault.scheme_of_text(stored, SIGNED_DATA, "licence-1") is AtRestScheme.SM4_GCM
    assert vault.open_text(stored, SIGNED_DATA, "licence-1") == "jws"
    with pytest.raises(AtRestError, match="does not decrypt"):
        vault.open_text(stored, SIGNED_DATA, "licence-2")
    assert "sm4-gcm" in repr(vault) and "hidden" in repr(vault)


def test_setting_names_the_schemes_and_follows_the_precedence(tmp_path: Path) -> None:
    assert tuple(s.value for s in AtRestScheme) == AT_REST_SCHEMES
    assert load_settings({}, env={}).at_rest_scheme == "aes-256-gcm"
    toml = tmp_path / "govtrust.toml"
    toml.write_text('at_rest_scheme = "sm4-gcm"\n')
    assert load_settings({}, config_file=toml, env={}).at_rest_scheme == "sm4-gcm"
    env = {"GOVTRUST_AT_REST_SCHEME": "aes-256-gcm"}
    assert load_settings({}, config_file=toml, env=env).at_rest_scheme == "aes-256-gcm"
    flags = {"at_rest_scheme": "sm4-gcm"}
    assert load_settings(flags, config_file=toml, env=env).at_rest_scheme == "sm4-gcm"
    with (
        unchanged(None, None, tmp_path),
        pytest.raises(ConfigError, match="at_rest_scheme: 'sm4-cbc' is not aes-256-gcm or sm4"),
    ):
        load_settings({}, config_file=toml, env={"GOVTRUST_AT_REST_SCHEME": "sm4-cbc"})
