"""grenier's benchmark: hits per second, miss-to-ready latency and memory, each beside baselines from the same run.

``python -m bench`` (or ``make bench``) runs it; ``docs/performance.md`` says what it measures and shows a run.
One module per concern:

* :mod:`bench.processes`: ports, starting, pinning and stopping processes, and their peak RSS.
* :mod:`bench.apps`: the small aiohttp servers it runs in their own processes (the origin, bare and naive).
* :mod:`bench.servers`: every contender (grenier embedded and on Redis, bare aiohttp, nginx, naive) started,
  warmed and stopped.
* :mod:`bench.load`: hits per second from ``wrk``, or from an aiohttp client loop when ``wrk`` is missing.
* :mod:`bench.probes`: miss-to-ready latency and Redis memory per entry.
* :mod:`bench.report`: the one markdown table.
* :mod:`bench.run`: the command line and the order of the phases.
"""
