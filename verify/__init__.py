"""One verification service over certificates, sealed PDFs, licences, seal signatures, tokens."""
