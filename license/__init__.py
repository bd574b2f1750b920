"""E-licences: catalogue, identifiers, issuance, rendering, status and public checking."""
