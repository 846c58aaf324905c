"""The program: `grenier serve | worker | purge` and the wiring, the one place the server and the workers meet."""
