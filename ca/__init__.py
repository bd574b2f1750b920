"""Certificate authority: profiles, issuance, revocation, CRL, OCSP and time-stamping."""
