"""The OpenID Connect provider of govtrust (the IdP part of ``idp``).

Domain code only: clients, signing keys, logins, sessions, codes and tokens. The HTTP adapter is
:mod:`govtrust.api.oidc_http`, the gRPC one :mod:`govtrust.api.oidc_grpc`.
"""
