"""E-seals: lifecycle, seal images and GB/T 38540 structures, and sealing PDFs."""
