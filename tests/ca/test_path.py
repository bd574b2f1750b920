"""ca.path: the one certificate path validator, on certificates made here with cryptography.

Expected answers follow RFC 5280 (validity, basicConstraints cA and pathLenConstraint,
keyCertSign), written out per case, not computed by the code under test.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ca.path import (
    PathInvalid,
    PathProblem,
    build_path,
    signature_verifies,
    signed_by,
    validate_chain,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    cn: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool,
    path_length: int | None = None,
    cert_sign: bool = True,
    days: int = 365,
) -> x509.Certificate:
    issuer_name = issuer[0].subject if issuer else _name(cn)
    signing_key = issuer[1] if issuer else key
    usage = x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca and cert_sign,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )
    return (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
        .add_extension(usage, critical=True)
        .sign(signing_key, hashes.SHA256())
    )


@pytest.fixture(scope="module")
def pki() -> dict[str, x509.Certificate]:
    keys = {n: ec.generate_private_key(ec.SECP256R1()) for n in ("root", "mid", "sub", "leaf")}
    root = _cert("Root", keys["root"], None, ca=True)
    mid = _cert("Mid", keys["mid"], (root, keys["root"]), ca=True, path_length=0)
    sub = _cert("Sub", keys["sub"], (mid, keys["mid"]), ca=True)
    leaf = _cert("Leaf", keys["leaf"], (sub, keys["sub"]), ca=False)
    short = _cert("Short", keys["leaf"], (mid, keys["mid"]), ca=False)
    no_sign = _cert("NoSign", keys["sub"], (root, keys["root"]), ca=True, cert_sign=False)
    under_no_sign = _cert("Under", keys["leaf"], (no_sign, keys["sub"]), ca=False)
    other_root = _cert("Root", ec.generate_private_key(ec.SECP256R1()), None, ca=True)
    return {
        "root": root,
        "mid": mid,
        "sub": sub,
        "leaf": leaf,
        "short": short,
        "no_sign": no_sign,
        "under_no_sign": under_no_sign,
        "other_root": other_root,
    }


def test_validate_chain_accepts_a_good_chain_and_says_what_is_wrong(
    pki: dict[str, x509.Certificate],
) -> None:
    root, mid, short = pki["root"], pki["mid"], pki["short"]
    assert validate_chain([short, mid], [root], at=NOW) is root
    assert validate_chain([short, mid, root], [root], at=NOW) is root
    cases = [
        ([], [root], NOW, PathProblem.NO_CHAIN),
        ([short, mid], [pki["other_root"]], NOW, PathProblem.UNTRUSTED),  # same name, other key
        ([short], [root], NOW, PathProblem.UNTRUSTED),  # the intermediate is missing
        ([short, mid], [root], NOW + timedelta(days=400), PathProblem.EXPIRED),
        ([short, mid], [root], NOW - timedelta(days=2), PathProblem.EXPIRED),
        ([mid], [root], NOW, PathProblem.WRONG_LEAF),  # a CA cannot sign as a leaf
        ([pki["under_no_sign"], pki["no_sign"]], [root], NOW, PathProblem.UNTRUSTED),
        ([short] * 7, [root], NOW, PathProblem.UNTRUSTED),  # longer than six
    ]
    for chain, roots, at, problem in cases:
        with pytest.raises(PathInvalid) as caught:
            validate_chain(chain, roots, at=at)
        assert caught.value.problem is problem, (chain, problem)
    with pytest.raises(PathInvalid) as caught:
        validate_chain([pki["under_no_sign"], pki["no_sign"]], [root], at=NOW)
    assert caught.value.message == "CN=NoSign may not sign certificates"


def test_build_path_finds_the_issuers_and_enforces_the_path_length(
    pki: dict[str, x509.Certificate],
) -> None:
    by_subject: dict[bytes, list[x509.Certificate]] = {}
    for name in ("root", "mid", "sub", "no_sign"):
        by_subject.setdefault(pki[name].subject.public_bytes(), []).append(pki[name])

    def issuers(cert: x509.Certificate) -> list[x509.Certificate]:
        return by_subject.get(cert.issuer.public_bytes(), [])

    def anchor(cert: x509.Certificate) -> bool:
        return cert == pki["root"]

    good = build_path(pki["short"], issuers, is_anchor=anchor)
    assert good.certificates == (pki["short"], pki["mid"], pki["root"])
    assert good.trusted and good.problem is None
    # Mid has pathLenConstraint 0 but Sub, a CA, stands below it: Mid (index 2) is violated.
    long = build_path(pki["leaf"], issuers, is_anchor=anchor)
    assert long.certificates == (pki["leaf"], pki["sub"], pki["mid"], pki["root"])
    assert (long.trusted, long.problem, long.index) == (False, PathProblem.PATH_LENGTH, 2)
    # an issuer without keyCertSign: the path stops there, at index 1
    no_ca = build_path(pki["under_no_sign"], issuers, is_anchor=anchor)
    assert (no_ca.trusted, no_ca.problem, no_ca.index) == (False, PathProblem.NOT_CA, 1)
    # no candidate's key verifies the link: the failing certificate is the leaf (index 0)
    bad = build_path(pki["short"], issuers, is_anchor=anchor, linked=lambda _c, _i: False)
    assert (bad.trusted, bad.problem, bad.index) == (False, PathProblem.BAD_SIGNATURE, 0)
    # an unknown issuer: untrusted, nothing found wrong
    lost = build_path(pki["short"], lambda _c: [], is_anchor=anchor)
    assert (lost.certificates, lost.trusted, lost.problem) == ((pki["short"],), False, None)


def test_signed_by_and_signature_verifies(pki: dict[str, x509.Certificate]) -> None:
    short, mid, root = pki["short"], pki["mid"], pki["root"]
    assert signed_by(short, mid) and signed_by(mid, root)
    assert not signed_by(short, root) and not signed_by(mid, pki["other_root"])
    assert signature_verifies(
        mid.public_key(), short.signature, short.tbs_certificate_bytes, hashes.SHA256()
    )
    assert not signature_verifies(
        root.public_key(), short.signature, short.tbs_certificate_bytes, hashes.SHA256()
    )
    assert not signature_verifies(
        mid.public_key(), short.signature, short.tbs_certificate_bytes + b"x", hashes.SHA256()
    )
