"""The shared core: rules, records, store, targets, guard, forwarding, settings and upstream fetching.

Imported by the server (`proxy`) and the workers (`jobs`); it imports neither.
"""
