"""What the tests are built from, held once: free ports, a throwaway redis-server, one programmable origin server,
``grenier`` subprocesses and the HTTP clients and assertions that talk to them.

Fixtures stay in the ``conftest.py`` files; the modules here are plain code, imported by name from the module that
holds it (``from tests.support.origins import Origin``), so that a helper has one definition and one import path.
"""
