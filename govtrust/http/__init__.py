"""The HTTP (ASGI/FastAPI) side: the app, its router registry and the JSON error mapping."""
