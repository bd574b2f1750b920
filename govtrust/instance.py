"""A govtrust instance: whether one exists, and what it was bootstrapped with.

Only ``govtrust init`` and ``govtrust serve`` create an instance (data directory, master key,
schema). Every other command opens an existing one and, pointed at a missing or uninitialised
one, stops with one line (:class:`NoInstance`) having created nothing: :func:`require_instance`
looks without writing (SQLite is opened read-only).

At bootstrap the instance records the master key's check value (never the key) and the kind of
key store (soft, or the PKCS#11 token's label); every later start compares
(:func:`check_bootstrap`) and refuses a replica whose master key or key store differs, instead of
letting it write personal data no other replica can read or look for keys where they are not.
Instances bootstrapped before this record existed get it on their first start.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, Integer, String, create_engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.pool import NullPool

from govtrust.config import Settings
from govtrust.db import Base, Database, describe_database, normalise_url
from govtrust.errors import FailedPrecondition
from govtrust.migrate import current_revisions

_ROW_ID = 1


class NoInstance(Exception):
    """The command needs an existing, initialised instance and there is none where it points."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InstanceBootstrap(Base):
    """The one row saying what the instance was bootstrapped with."""

    __tablename__ = "instance_bootstrap"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    master_key_check: Mapped[str] = mapped_column(String(64))
    keystore: Mapped[str] = mapped_column(String(16))
    pkcs11_token_label: Mapped[str | None] = mapped_column(String(200), nullable=True)
    bootstrapped_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


def _init_hint(settings: Settings) -> str:
    if settings.database_url is None:
        return f"`govtrust init --data-dir {settings.data_dir}` creates one"
    return "`govtrust init` with the same GOVTRUST_DATABASE_URL creates one"


def require_instance(settings: Settings) -> None:
    """Raise :class:`NoInstance` unless ``settings`` point at an initialised instance.

    Writes nothing: no directory, no database file, no master key.
    """
    url = settings.effective_database_url
    where = describe_database(url)
    if settings.database_url is None:
        path = (settings.data_dir / "govtrust.db").resolve()
        if not path.is_file():
            raise NoInstance(
                f"no govtrust instance at {settings.data_dir} ({path.name} does not exist); "
                + _init_hint(settings)
            )
        url = f"sqlite:///file:{path}?mode=ro&uri=true"
    engine = create_engine(normalise_url(url), poolclass=NullPool)
    try:
        revisions = current_revisions(engine)
    except DBAPIError as exc:
        first = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else "error"
        raise NoInstance(f"cannot open the database {where}: {first}") from None
    finally:
        engine.dispose()
    if not revisions:
        raise NoInstance(
            f"the database {where} is not an initialised govtrust instance; " + _init_hint(settings)
        )


def keystore_name(keystore: str, token_label: str | None) -> str:
    """``soft`` or ``PKCS#11 token 'label'``."""
    return f"PKCS#11 token {token_label!r}" if keystore == "pkcs11" else "soft"


def _keystore_settings(keystore: str, token_label: str | None) -> str:
    if keystore == "pkcs11":
        return f"GOVTRUST_HSM=pkcs11 and GOVTRUST_PKCS11_TOKEN_LABEL={token_label}"
    return "GOVTRUST_HSM=soft"


def check_bootstrap(
    db: Database,
    *,
    master_key_check: str,
    master_key_source: str,
    keystore: str,
    token_label: str | None,
) -> None:
    """Record the bootstrap (first start) or refuse a master key or key store that differs."""
    label = token_label if keystore == "pkcs11" else None
    for _attempt in range(2):
        try:
            with db.transaction() as session:
                row = session.get(InstanceBootstrap, _ROW_ID)
                if row is None:
                    session.add(
                        InstanceBootstrap(
                            id=_ROW_ID,
                            master_key_check=master_key_check,
                            keystore=keystore,
                            pkcs11_token_label=label,
                            bootstrapped_at=datetime.now(UTC),
                        )
                    )
                    return
                recorded = (row.master_key_check, row.keystore, row.pkcs11_token_label)
            break
        except IntegrityError:  # another replica recorded it first: compare with its record
            continue
    else:  # pragma: no cover - the second attempt reads the row the first one collided with
        raise FailedPrecondition("cannot record the instance bootstrap")
    recorded_check, recorded_keystore, recorded_label = recorded
    if recorded_check != master_key_check:
        raise FailedPrecondition(
            f"the master key (from {master_key_source}) is not the one this database was "
            "bootstrapped with (its key check value differs); give every replica the same "
            "GOVTRUST_MASTER_KEY"
        )
    if (recorded_keystore, recorded_label) != (keystore, label):
        bootstrapped = keystore_name(recorded_keystore, recorded_label)
        raise FailedPrecondition(
            f"the configured key store ({keystore_name(keystore, label)}) differs from the one "
            f"this database was bootstrapped with ({bootstrapped}); "
            f"set {_keystore_settings(recorded_keystore, recorded_label)}"
        )
