"""Import every package's table definitions so that ``Base.metadata`` is complete.

Alembic's env and the test fixtures import this module; add a line for each new models module.
"""

from __future__ import annotations

import ca.models  # noqa: F401
import govtrust.audit
import govtrust.idempotency
import govtrust.instance
import govtrust.lease
import govtrust.shared_limits  # noqa: F401
import hsm.models  # noqa: F401
import idp.models  # noqa: F401
import idp.oidc.models as _oidc_models  # noqa: F401
import license.models  # noqa: F401
import seal.models  # noqa: F401
from govtrust.db import Base

metadata = Base.metadata
