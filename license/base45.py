"""Base45 (RFC 9285): bytes as characters of the QR alphanumeric set, 3 characters per 2 bytes."""

from __future__ import annotations

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_DECODE_TABLE = bytes(ALPHABET.find(chr(b)) if chr(b) in ALPHABET else 255 for b in range(256))


def b45encode(data: bytes) -> str:
    """Encode ``data`` as Base45."""
    out: list[str] = []
    append = out.append
    full = len(data) - len(data) % 2
    for i in range(0, full, 2):
        n = data[i] * 256 + data[i + 1]
        e, rest = divmod(n, 2025)
        d, c = divmod(rest, 45)
        append(ALPHABET[c] + ALPHABET[d] + ALPHABET[e])
    if full != len(data):
        d, c = divmod(data[-1], 45)
        append(ALPHABET[c] + ALPHABET[d])
    return "".join(out)


def b45decode(text: str) -> bytes:
    """Decode Base45; raises ``ValueError`` on a bad character, length or value."""
    if not text.isascii():
        raise ValueError("invalid Base45 character (not ASCII)")
    digits = text.encode("ascii").translate(_DECODE_TABLE)
    if digits and max(digits) >= 45:
        raise ValueError("invalid Base45 character")
    length = len(digits)
    if length % 3 == 1:
        raise ValueError("invalid Base45 length")
    full = length - length % 3
    k = full // 3
    # Triplets decoded with big-integer arithmetic over 24-bit slots (no per-triplet Python
    # loop): slot i holds c_i + 45 d_i + 2025 e_i <= 91124 < 2**24, so slots never carry.
    slots = [bytearray(full), bytearray(full), bytearray(full)]
    for offset, slot in enumerate(slots):
        slot[2::3] = digits[offset:full:3]
    c, d, e = (int.from_bytes(slot, "big") for slot in slots)
    wide = (c + 45 * d + 2025 * e).to_bytes(full, "big")
    if wide[0::3] != bytes(k):
        raise ValueError("invalid Base45 triplet")
    decoded = bytearray(2 * k)
    decoded[0::2] = wide[1::3]
    decoded[1::2] = wide[2::3]
    out = bytes(decoded)
    if full != length:
        n = digits[full] + digits[full + 1] * 45
        if n > 0xFF:
            raise ValueError("invalid Base45 pair")
        out += bytes((n,))
    return out
