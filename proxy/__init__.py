"""grenier: a caching HTTP proxy (aiohttp front, Redis store, Dramatiq fetch jobs)."""

__version__ = "0.1.0"
