"""The web console (``/console``): seal administrators' work queues and actions, legal persons'
applications and use grants — an HTTP adapter over the seal domain (:mod:`.routes`)."""

from govtrust.api.console.routes import router

__all__ = ["router"]
