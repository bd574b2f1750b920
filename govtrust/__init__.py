"""govtrust: the trust infrastructure under a city's e-government platform."""

__version__ = "0.1.0"
