"""Fetch jobs: the Dramatiq broker wiring, the fetch actor and the upstream fetcher."""
