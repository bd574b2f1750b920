"""Open the platform for serving, turning every expected failure into one clear line."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from govtrust.config import Settings
from govtrust.errors import GovtrustError
from govtrust.server.process import StartupError

if TYPE_CHECKING:
    from govtrust.platform import Platform


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "unknown error"


def open_for_serving(settings: Settings, *, migrate: bool | None = None) -> Platform:
    """``open_platform`` with failures (schema behind, DB down, key store) as ``StartupError``."""
    from govtrust.platform import open_platform

    try:
        return open_platform(settings, migrate=migrate)
    except GovtrustError as exc:
        raise StartupError(exc.message) from None
    except DBAPIError as exc:
        raise StartupError(f"cannot open the database: {_first_line(str(exc.orig))}") from None
    except SQLAlchemyError as exc:
        raise StartupError(f"cannot open the database: {_first_line(str(exc))}") from None
    except OSError as exc:
        raise StartupError(f"cannot open the data directory {settings.data_dir}: {exc}") from None
