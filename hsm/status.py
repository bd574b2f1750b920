"""The key store's status as an operator sees it: which backend, whether it answers, and how
many keys it holds by algorithm and state (no key material, no key ids)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hsm.keystore import KeyStore


@dataclass(frozen=True)
class KeyCount:
    """How many keys of one algorithm are in one state (active, destroyed, escrowed)."""

    algorithm: str
    state: str
    count: int


@dataclass(frozen=True)
class KeyStoreStatus:
    """The key store at one moment."""

    backend: str
    reachable: bool
    problem: str  # why it is not reachable ("" when it is)
    signs_on_device: bool
    counts: list[KeyCount] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Keys in every state."""
        return sum(c.count for c in self.counts)


def keystore_status(keystore: KeyStore, backend: str) -> KeyStoreStatus:
    """Ping the store and count its keys by algorithm and state (a store that can count its
    destroyed and escrowed keys, like the soft store, does; otherwise its live keys)."""
    try:
        keystore.ping()
    except Exception as exc:  # noqa: BLE001 - an unreachable store is shown, not raised
        return KeyStoreStatus(backend, False, f"{type(exc).__name__}: {exc}", False)
    counter = getattr(keystore, "key_counts", None)
    if callable(counter):
        counts = [KeyCount(a, s, n) for a, s, n in counter()]
    else:
        tally: dict[str, int] = {}
        for ref in keystore.list():
            tally[ref.algorithm.value] = tally.get(ref.algorithm.value, 0) + 1
        counts = [KeyCount(a, "active", n) for a, n in sorted(tally.items())]
    return KeyStoreStatus(backend, True, "", keystore.signs_on_device, counts)
