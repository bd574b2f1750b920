"""The security headers of govtrust's server-rendered pages (the public licence page, the
console): nothing loads but the page's one inline stylesheet (allowed by its hash) and images
from the site or ``data:``; forms post only to the site; no framing, sniffing or referrer."""

from __future__ import annotations

import base64
import hashlib


def strict_page_headers(css: str) -> dict[str, str]:
    """Headers for a page whose only style is ``css`` inlined in a ``<style>`` element."""
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    return {
        "Cache-Control": "no-store",
        "Content-Security-Policy": (
            f"default-src 'none'; style-src 'sha256-{digest}'; img-src 'self' data:; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        ),
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
