"""Observability: JSON logs (:mod:`.logs`) and Prometheus metrics (:mod:`.metrics`).

It sits below the transports (``govtrust.rpc``, ``govtrust.http``), which log and count every
call, and below ``govtrust.server``, which sets both up; it imports none of them.
"""
