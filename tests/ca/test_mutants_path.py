"""ca.path: the RFC 5280 cases that pin each rule of the path validator (mutation tests).

Certificates are built in memory with ``cryptography``; the expected problems, messages and
indices are written out per case (RFC 5280 §4.2.1.9 basicConstraints, §4.2.1.3 keyUsage,
§4.2.1.1/4.2.1.2 key identifiers, §4.1.2.5 validity, both bounds inclusive).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa, x25519
from cryptography.x509.oid import NameOID

from ca.path import (
    MAX_CHAIN,
    BuiltPath,
    PathInvalid,
    PathProblem,
    build_path,
    ca_problem,
    is_ca,
    key_ids_match,
    path_length_violation,
    signature_verifies,
    signed_by,
    signing_problem,
    validate_chain,
    within_validity,
)

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)

_KEYS: dict[str, ec.EllipticCurvePrivateKey] = {}


def _key(name: str) -> ec.EllipticCurvePrivateKey:
    if name not in _KEYS:
        _KEYS[name] = ec.generate_private_key(ec.SECP256R1())
    return _KEYS[name]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _usage(
    *, digital: bool = False, commit: bool = False, cert_sign: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital,
        content_commitment=commit,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass
class Made:
    cert: x509.Certificate
    key: Any


def _make(
    cn: str,
    issuer: Made | None,
    *,
    key: Any = None,
    bc: x509.BasicConstraints | None = None,
    ku: x509.KeyUsage | None = None,
    start: datetime = T0,
    end: datetime = T0 + timedelta(days=30),
    ski: bytes | None = None,
    aki: bytes | None = None,
    aki_none: bool = False,
    issuer_name: x509.Name | None = None,
) -> Made:
    key = key if key is not None else _key(cn)
    signer = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer_name or (issuer.cert.subject if issuer else _name(cn)))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
    )
    if bc is not None:
        builder = builder.add_extension(bc, critical=True)
    if ku is not None:
        builder = builder.add_extension(ku, critical=True)
    if ski is not None:
        builder = builder.add_extension(x509.SubjectKeyIdentifier(ski), critical=False)
    if aki is not None or aki_none:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier(aki, None, None)
            if aki is not None
            else x509.AuthorityKeyIdentifier(None, [x509.DirectoryName(_name("X"))], 1),
            critical=False,
        )
    alg = (
        None
        if isinstance(signer, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey))
        else (hashes.SHA256())
    )
    return Made(builder.sign(signer, alg), key)


def _ca(cn: str, issuer: Made | None, path_length: int | None = None, **kw: Any) -> Made:
    kw.setdefault("ku", _usage(cert_sign=True))
    return _make(cn, issuer, bc=x509.BasicConstraints(ca=True, path_length=path_length), **kw)


def _leaf(cn: str, issuer: Made | None, **kw: Any) -> Made:
    kw.setdefault("ku", _usage(digital=True))
    return _make(cn, issuer, bc=x509.BasicConstraints(ca=False, path_length=None), **kw)


def _raises(
    chain: Sequence[x509.Certificate], roots: Sequence[x509.Certificate], at: datetime | None
) -> PathInvalid:
    with pytest.raises(PathInvalid) as caught:
        validate_chain(chain, roots, at=at)
    return caught.value


# --- signature_verifies / signed_by ------------------------------------------------------------


def test_signature_verifies_each_key_type_and_refuses_the_rest() -> None:
    data = b"to be signed"
    eck = ec.generate_private_key(ec.SECP256R1())
    sig = eck.sign(data, ec.ECDSA(hashes.SHA256()))
    assert signature_verifies(eck.public_key(), sig, data, hashes.SHA256()) is True
    assert signature_verifies(eck.public_key(), sig, data + b"!", hashes.SHA256()) is False
    assert signature_verifies(eck.public_key(), sig, data, None) is False  # no hash for ECDSA
    assert signature_verifies(eck.public_key(), b"junk", data, hashes.SHA256()) is False
    rsk = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    from cryptography.hazmat.primitives.asymmetric import padding

    rsig = rsk.sign(data, padding.PKCS1v15(), hashes.SHA256())
    assert signature_verifies(rsk.public_key(), rsig, data, hashes.SHA256()) is True
    assert signature_verifies(rsk.public_key(), rsig, data + b"!", hashes.SHA256()) is False
    assert signature_verifies(rsk.public_key(), rsig, data, hashes.SHA384()) is False
    assert signature_verifies(rsk.public_key(), rsig, data, None) is False
    edk = ed25519.Ed25519PrivateKey.generate()
    esig = edk.sign(data)
    assert signature_verifies(edk.public_key(), esig, data, None) is True
    assert signature_verifies(edk.public_key(), esig, data + b"!", None) is False
    ed4 = ed448.Ed448PrivateKey.generate()
    e4sig = ed4.sign(data)
    assert signature_verifies(ed4.public_key(), e4sig, data, None) is True
    assert signature_verifies(ed4.public_key(), esig, data, None) is False
    xk = x25519.X25519PrivateKey.generate().public_key()
    assert signature_verifies(xk, esig, data, None) is False
    assert signature_verifies(None, esig, data, hashes.SHA256()) is False


def test_signed_by_needs_the_issuer_name_and_key() -> None:
    root = _ca("R1", None)
    leaf = _leaf("L1", root)
    renamed = _leaf("L2", root, issuer_name=_name("Elsewhere"))
    assert signed_by(leaf.cert, root.cert) is True
    assert signed_by(renamed.cert, root.cert) is False  # the names do not chain
    assert signed_by(leaf.cert, _ca("R1", None, key=_key("other-R1")).cert) is False
    ed_root = _ca("ER", None, key=ed25519.Ed25519PrivateKey.generate())
    ed_leaf = _leaf("EL", ed_root)
    assert signed_by(ed_leaf.cert, ed_root.cert) is True
    rsa_root = _ca("RR", None, key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    assert signed_by(_leaf("RL", rsa_root).cert, rsa_root.cert) is True
    assert signed_by(ed_leaf.cert, _ca("ER", None, key=_key("ER2")).cert) is False


# --- CA and signer rules -----------------------------------------------------------------------


def test_ca_rules_basic_constraints_and_key_cert_sign() -> None:
    plain = _make("Plain", None)  # neither basicConstraints nor keyUsage
    not_ca = _make("NotCA", None, bc=x509.BasicConstraints(ca=False, path_length=None))
    no_ku = _make("NoKU", None, bc=x509.BasicConstraints(ca=True, path_length=None))
    no_sign = _ca("NoSign", None, ku=_usage(digital=True))
    good = _ca("Good", None)
    assert ca_problem(plain.cert) == "CN=Plain is not a CA certificate"
    assert ca_problem(not_ca.cert) == "CN=NotCA is not a CA certificate"
    assert ca_problem(no_ku.cert) == ""
    assert ca_problem(no_sign.cert) == "CN=NoSign may not sign certificates"
    assert ca_problem(good.cert) == ""
    assert [is_ca(m.cert) for m in (plain, not_ca, no_ku, no_sign, good)] == [
        False,
        False,
        True,
        False,
        True,
    ]


def test_signing_problem_for_an_end_entity() -> None:
    cases = [
        (_make("P", None), ""),  # no extensions: may sign
        (_make("B", None, bc=x509.BasicConstraints(ca=False, path_length=None)), ""),
        (_ca("C", None), "the signing certificate is a CA certificate"),
        (
            _make("CNoKU", None, bc=x509.BasicConstraints(ca=True, path_length=None)),
            "the signing certificate is a CA certificate",
        ),
        (_leaf("D", None), ""),
        (_leaf("N", None, ku=_usage(commit=True)), ""),
        (_leaf("DN", None, ku=_usage(digital=True, commit=True)), ""),
        (
            _leaf("E", None, ku=_usage(cert_sign=True)),
            "the signing certificate may not make digital signatures",
        ),
    ]
    for made, expected in cases:
        assert signing_problem(made.cert) == expected, made.cert.subject


def test_key_ids_match_each_combination() -> None:
    issuer = _ca("KI", None, ski=b"\x01" * 20)
    issuer_no_ski = _ca("KN", None)
    same = _leaf("K1", issuer, aki=b"\x01" * 20)
    other = _leaf("K2", issuer, aki=b"\x02" * 20)
    no_aki = _leaf("K3", issuer)
    aki_without_id = _leaf("K4", issuer, aki_none=True)
    assert key_ids_match(same.cert, issuer.cert) is True
    assert key_ids_match(other.cert, issuer.cert) is False
    assert key_ids_match(no_aki.cert, issuer.cert) is True
    assert key_ids_match(aki_without_id.cert, issuer.cert) is True
    assert key_ids_match(other.cert, issuer_no_ski.cert) is True


# --- validity ------------------------------------------------------------------------------------


def test_within_validity_includes_both_bounds() -> None:
    cert = _leaf("V", None, start=T0, end=T0 + timedelta(days=1)).cert
    assert within_validity(cert, T0) is True
    assert within_validity(cert, T0 + timedelta(days=1)) is True
    assert within_validity(cert, T0 - SECOND) is False
    assert within_validity(cert, T0 + timedelta(days=1) + SECOND) is False


@pytest.fixture(scope="module")
def chain3() -> dict[str, Made]:
    """Root (T0..T0+40d), Mid (T0+1d..T0+30d), Leaf (T0+2d..T0+20d): each link's bounds differ."""
    root = _ca("Root", None, start=T0, end=T0 + timedelta(days=40))
    mid = _ca("Mid", root, start=T0 + timedelta(days=1), end=T0 + timedelta(days=30))
    leaf = _leaf("Leaf", mid, start=T0 + timedelta(days=2), end=T0 + timedelta(days=20))
    return {"root": root, "mid": mid, "leaf": leaf}


def test_validate_chain_validity_at_the_first_and_last_second_of_every_link(
    chain3: dict[str, Made],
) -> None:
    root, mid, leaf = (chain3[n].cert for n in ("root", "mid", "leaf"))
    first, last = T0 + timedelta(days=2), T0 + timedelta(days=20)
    assert validate_chain([leaf, mid], [root], at=first) is root
    assert validate_chain([leaf, mid], [root], at=last) is root
    err = _raises([leaf, mid], [root], first - SECOND)
    assert err.problem is PathProblem.EXPIRED
    assert err.message == f"certificate CN=Leaf is not valid at {(first - SECOND).isoformat()}"
    err = _raises([leaf, mid], [root], last + SECOND)
    assert err.message == f"certificate CN=Leaf is not valid at {(last + SECOND).isoformat()}"
    # the intermediate's and the root's own bounds: a leaf valid longer than its issuers
    long_leaf = _leaf("Long", chain3["mid"], start=T0, end=T0 + timedelta(days=50)).cert
    assert validate_chain([long_leaf, mid], [root], at=T0 + timedelta(days=1)) is root
    assert validate_chain([long_leaf, mid], [root], at=T0 + timedelta(days=30)) is root
    err = _raises([long_leaf, mid], [root], T0 + timedelta(days=1) - SECOND)
    assert (err.problem, err.message) == (
        PathProblem.EXPIRED,
        f"certificate CN=Mid is not valid at {(T0 + timedelta(days=1) - SECOND).isoformat()}",
    )
    err = _raises([long_leaf, mid], [root], T0 + timedelta(days=30) + SECOND)
    assert err.message.startswith("certificate CN=Mid is not valid at")
    # the root reached (not in the chain) is checked too
    long_mid = _ca("Mid", chain3["root"], start=T0, end=T0 + timedelta(days=50)).cert
    under = _leaf("Under", Made(long_mid, chain3["mid"].key), start=T0, end=T0 + timedelta(days=50))
    assert validate_chain([under.cert, long_mid], [root], at=T0 + timedelta(days=40)) is root
    err = _raises([under.cert, long_mid], [root], T0 + timedelta(days=40) + SECOND)
    assert err.message == (
        f"certificate CN=Root is not valid at {(T0 + timedelta(days=40) + SECOND).isoformat()}"
    )
    # the root included in the chain is checked when reached as a chain member
    err = _raises([under.cert, long_mid, root], [root], T0 + timedelta(days=40) + SECOND)
    assert err.message.startswith("certificate CN=Root is not valid at")


def test_validate_chain_converts_the_time_to_utc_and_defaults_to_now(
    chain3: dict[str, Made],
) -> None:
    root, mid, leaf = (chain3[n].cert for n in ("root", "mid", "leaf"))
    plus2 = timezone(timedelta(hours=2))
    before = (T0 + timedelta(days=2) - SECOND).astimezone(plus2)
    err = _raises([leaf, mid], [root], before)
    assert err.message == "certificate CN=Leaf is not valid at 2026-03-03T11:59:59+00:00"
    # the default moment is now: these (2026-03) are long expired, a fresh chain is valid
    assert _raises([leaf, mid], [root], None).problem is PathProblem.EXPIRED
    now = datetime.now(UTC)
    fresh_root = _ca("FR", None, start=now - timedelta(hours=1), end=now + timedelta(hours=1))
    fresh = _leaf("FL", fresh_root, start=now - timedelta(hours=1), end=now + timedelta(hours=1))
    assert validate_chain([fresh.cert], [fresh_root.cert]) is fresh_root.cert


def test_validate_chain_problems_and_messages(chain3: dict[str, Made]) -> None:
    root, mid, leaf = (chain3[n].cert for n in ("root", "mid", "leaf"))
    at = T0 + timedelta(days=5)
    err = _raises([], [root], at)
    assert (err.problem, err.message) == (PathProblem.NO_CHAIN, "no signing certificate")
    assert str(err) == "no signing certificate"
    err = _raises([leaf, mid], [], at)
    assert (err.problem, err.message) == (
        PathProblem.UNTRUSTED,
        "the certificate chain does not end at a trusted root",
    )
    err = _raises([mid], [root], at)
    assert (err.problem, err.message) == (
        PathProblem.WRONG_LEAF,
        "the signing certificate is a CA certificate",
    )
    stranger = _leaf("Stranger", _ca("Else", None))
    err = _raises([stranger.cert, mid], [root], at)
    assert (err.problem, err.message) == (
        PathProblem.UNTRUSTED,
        "CN=Stranger is not issued by the next certificate",
    )
    # the next certificate signed it but is no CA
    not_ca = _make("NotCA", chain3["root"], bc=x509.BasicConstraints(ca=False, path_length=None))
    under = _leaf("UnderNotCA", not_ca)
    err = _raises([under.cert, not_ca.cert], [root], at)
    assert (err.problem, err.message) == (PathProblem.UNTRUSTED, "CN=NotCA is not a CA certificate")
    # a leaf directly under the root, the root given or not in the chain
    direct = _leaf("Direct", chain3["root"]).cert
    assert validate_chain([direct], [root], at=at) is root
    assert validate_chain([direct, root], [root], at=at) is root
    # a self-signed leaf that is itself the trusted root
    self_leaf = _leaf("Self", None).cert
    assert validate_chain([self_leaf], [self_leaf], at=at) is self_leaf
    # the second of two roots
    other = _ca("Other", None).cert
    assert validate_chain([leaf, mid], [other, root], at=at) is root
    err = _raises([leaf, mid], [other], at)
    assert err.message == "the certificate chain does not end at a trusted root"


def test_validate_chain_length_limit() -> None:
    assert MAX_CHAIN == 6
    root = _ca("C0", None)
    cas = [root]
    for i in range(1, MAX_CHAIN):
        cas.append(_ca(f"C{i}", cas[-1]))
    leaf = _leaf("CL", cas[-1])
    at = T0 + timedelta(days=1)
    six = [leaf.cert] + [c.cert for c in reversed(cas[1:])]  # leaf + 5 intermediates
    assert len(six) == MAX_CHAIN
    assert validate_chain(six, [root.cert], at=at) is root.cert
    seven = [*six, root.cert]
    err = _raises(seven, [root.cert], at)
    assert (err.problem, err.message) == (PathProblem.UNTRUSTED, "certificate chain too long")


def test_validate_chain_malformed_certificate() -> None:
    root = _ca("MR", None)
    # an unparseable extension value is read lazily (a ValueError) and reported as malformed
    bad = (
        x509.CertificateBuilder()
        .subject_name(_name("Bad"))
        .issuer_name(root.cert.subject)
        .public_key(_key("Bad").public_key())
        .serial_number(1)
        .not_valid_before(T0)
        .not_valid_after(T0 + timedelta(days=1))
        .add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier("2.5.29.19"), b"\x00\x01"),
            critical=True,
        )
        .sign(root.key, hashes.SHA256())
    )
    err = _raises([bad], [root.cert], T0)
    assert err.problem is PathProblem.MALFORMED
    assert err.message.startswith("a certificate in the chain cannot be read: ")


# --- path length -----------------------------------------------------------------------------


def _ladder(limits: Sequence[int | None]) -> list[x509.Certificate]:
    """A root then CAs with the given pathLenConstraints (root first), then a leaf; returned
    leaf first."""
    made = [_ca("L0", None, limits[0])]
    for i, limit in enumerate(limits[1:], start=1):
        made.append(_ca(f"L{i}", made[-1], limit))
    leaf = _leaf("LLeaf", made[-1])
    return [leaf.cert] + [m.cert for m in reversed(made)]


def test_path_length_at_the_limit_and_one_over() -> None:
    # path = leaf, CA(index 1), ..., root(last); CA at index i has i - 1 CAs below it
    assert path_length_violation(_ladder([0])) is None
    assert path_length_violation(_ladder([0, None])) == 2  # the root (limit 0) above one CA
    assert path_length_violation(_ladder([None, 0])) is None
    assert path_length_violation(_ladder([1, None])) is None  # root: one CA below, limit 1
    assert path_length_violation(_ladder([0, 5])) == 2  # root at index 2 has one CA below
    assert path_length_violation(_ladder([1, None, None])) == 3
    assert path_length_violation(_ladder([2, None, None])) is None
    assert path_length_violation(_ladder([None, 0, None])) == 2
    assert path_length_violation(_ladder([0, 0, None])) == 2  # the first (lowest) violation
    # no basicConstraints on a CA in the middle: skipped, the one above still counts
    root = _ca("N0", None, 1)
    bare = _make("N1", root, ku=_usage(cert_sign=True))
    mid = _ca("N2", bare, None)
    leaf = _leaf("NL", mid)
    assert path_length_violation([leaf.cert, mid.cert, bare.cert, root.cert]) == 3
    root2 = _ca("M0", None, 2)
    bare2 = _make("M1", root2, ku=_usage(cert_sign=True))
    leaf2 = _leaf("ML", bare2)
    assert path_length_violation([leaf2.cert, bare2.cert, root2.cert]) is None
    assert path_length_violation([leaf2.cert]) is None
    # the leaf's own basicConstraints are not a constraint (index 0 is skipped)
    leaf_bc = _make(
        "LB", None, bc=x509.BasicConstraints(ca=True, path_length=0), ku=_usage(cert_sign=True)
    )
    assert path_length_violation([leaf_bc.cert, _ca("X1", None, 0).cert]) is None


# --- build_path ------------------------------------------------------------------------------


def _index(*made: x509.Certificate) -> dict[bytes, list[x509.Certificate]]:
    found: dict[bytes, list[x509.Certificate]] = {}
    for cert in made:
        found.setdefault(cert.subject.public_bytes(), []).append(cert)
    return found


def _build(
    leaf: x509.Certificate,
    pool: Sequence[x509.Certificate],
    anchor: x509.Certificate,
    **kw: Any,
) -> BuiltPath:
    found = _index(*pool)
    return build_path(
        leaf,
        lambda c: found.get(c.issuer.public_bytes(), []),
        is_anchor=lambda c: c == anchor,
        **kw,
    )


def test_build_path_picks_the_candidate_whose_key_verifies() -> None:
    root = _ca("BR", None)
    decoy = _ca("BR", None, key=_key("decoy")).cert  # same name, other key
    mid = _ca("BM", root)
    leaf = _leaf("BL", mid).cert
    for pool in ([decoy, root.cert, mid.cert], [root.cert, decoy, mid.cert]):
        got = _build(leaf, pool, root.cert)
        assert got == BuiltPath((leaf, mid.cert, root.cert), True, None, 0)
    # only the decoy: no key verifies Mid, which is then the failing certificate (index 1)
    got = _build(leaf, [decoy, mid.cert], root.cert)
    assert got == BuiltPath((leaf, mid.cert), False, PathProblem.BAD_SIGNATURE, 1)
    # the leaf itself is the anchor
    assert _build(leaf, [], leaf) == BuiltPath((leaf,), True, None, 0)


def test_build_path_uses_the_key_ids_to_choose() -> None:
    root_a = _ca("KR", None, key=_key("KRa"), ski=b"\xaa" * 20)
    root_b = _ca("KR", None, key=_key("KRb"), ski=b"\xbb" * 20)
    leaf = _leaf("KL", root_b, aki=b"\xbb" * 20).cert
    linked_calls: list[tuple[x509.Certificate, x509.Certificate]] = []

    def linked(child: x509.Certificate, issuer: x509.Certificate) -> bool:
        linked_calls.append((child, issuer))
        return True  # trusts the key ids alone

    got = _build(leaf, [root_a.cert, root_b.cert], root_b.cert, linked=linked)
    assert got == BuiltPath((leaf, root_b.cert), True, None, 0)
    assert linked_calls == [(leaf, root_b.cert)]
    # the key ids name no candidate: unknown issuer, untrusted with no problem
    odd = _leaf("KL", root_b, aki=b"\xcc" * 20).cert
    assert _build(odd, [root_a.cert, root_b.cert], root_b.cert) == BuiltPath((odd,), False, None, 0)


def test_build_path_not_ca_and_key_cert_sign() -> None:
    root = _ca("NR", None)
    not_ca = _make("NN", root, bc=x509.BasicConstraints(ca=False, path_length=None))
    no_sign = _ca("NS", root, ku=_usage(digital=True))
    for issuer in (not_ca, no_sign):
        leaf = _leaf("NL", issuer).cert
        got = _build(leaf, [root.cert, issuer.cert], root.cert)
        assert got == BuiltPath((leaf, issuer.cert), False, PathProblem.NOT_CA, 1)
    # deeper: the non-CA at index 2
    mid = _ca("NM", not_ca)
    leaf = _leaf("NL2", mid).cert
    got = _build(leaf, [root.cert, not_ca.cert, mid.cert], root.cert)
    assert got == BuiltPath((leaf, mid.cert, not_ca.cert), False, PathProblem.NOT_CA, 2)


def test_build_path_length_constraint_at_the_limit_and_one_over() -> None:
    for limit, expected in ((1, None), (0, 2)):
        root = _ca("PR", None, limit, key=_key(f"PR{limit}"))
        mid = _ca("PM", root, key=_key(f"PM{limit}"))
        leaf = _leaf("PL", mid).cert
        got = _build(leaf, [root.cert, mid.cert], root.cert)
        assert got.certificates == (leaf, mid.cert, root.cert)
        if expected is None:
            assert (got.trusted, got.problem, got.index) == (True, None, 0)
        else:
            assert (got.trusted, got.problem, got.index) == (False, PathProblem.PATH_LENGTH, 2)
    # a path that does not reach an anchor is not length-checked
    root = _ca("QR", None, 0)
    mid = _ca("QM", root)
    leaf = _leaf("QL", mid).cert
    got = _build(leaf, [root.cert, mid.cert], _ca("Elsewhere", None).cert)
    assert got == BuiltPath((leaf, mid.cert, root.cert), False, None, 0)


def test_build_path_max_length_and_loops() -> None:
    made = [_ca("D0", None)]
    for i in range(1, 9):
        made.append(_ca(f"D{i}", made[-1]))
    leaf = _leaf("DL", made[-1]).cert
    pool = [m.cert for m in made]
    full = _build(leaf, pool, made[0].cert)  # 10 certificates: 9 steps needed, default 8
    assert full.certificates == (leaf, *[m.cert for m in reversed(made[1:])])
    assert (full.trusted, full.problem) == (False, None)
    # the anchor is recognised at the start of a step: nine steps add D0 but do not look at it
    nine = _build(leaf, pool, made[0].cert, max_length=9)
    assert len(nine.certificates) == 10 and not nine.trusted
    ten = _build(leaf, pool, made[0].cert, max_length=10)
    assert ten.trusted and len(ten.certificates) == 10
    shorter = _build(leaf, pool, made[0].cert, max_length=1)
    assert shorter.certificates == (leaf, made[-1].cert) and not shorter.trusted
    # by default an anchor seven CAs up is reached, eight up is not
    seven = _build(leaf, pool, made[2].cert)
    assert seven.trusted and len(seven.certificates) == 8
    eight = _build(leaf, pool, made[1].cert)
    assert not eight.trusted and len(eight.certificates) == 9
    # a cross-signed loop: A signed by B, B signed by A, no anchor: stops without repeating
    ka, kb = _key("LoopA"), _key("LoopB")
    a_by_b = _ca("LA", Made(_ca("LB", None, key=kb).cert, kb), key=ka).cert
    b_by_a = _ca("LB", Made(a_by_b, ka), key=kb).cert
    leaf2 = _leaf("LLf", Made(a_by_b, ka)).cert
    loop = _build(leaf2, [a_by_b, b_by_a], _ca("Nowhere", None).cert)
    assert loop == BuiltPath((leaf2, a_by_b, b_by_a), False, None, 0)
    # a self-issued candidate of a self-signed certificate is skipped (c is current)
    selfsigned = _ca("SS", None).cert
    assert _build(selfsigned, [selfsigned], _ca("Nowhere", None).cert) == BuiltPath(
        (selfsigned,), False, None, 0
    )


@pytest.fixture
def paris_local_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone set to Europe/Paris for one test, then restored."""
    monkeypatch.setenv("TZ", "Europe/Paris")
    time.tzset()
    try:
        yield
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.usefixtures("paris_local_time")
def test_validate_chain_reports_the_moment_in_utc_whatever_the_local_zone(
    chain3: dict[str, Made],
) -> None:
    root, mid, leaf = (chain3[n].cert for n in ("root", "mid", "leaf"))
    assert datetime(2026, 3, 1, tzinfo=UTC).astimezone(None).utcoffset() == timedelta(hours=1)
    before = T0 + timedelta(days=2) - SECOND
    err = _raises([leaf, mid], [root], before)
    assert err.message == "certificate CN=Leaf is not valid at 2026-03-03T11:59:59+00:00"
