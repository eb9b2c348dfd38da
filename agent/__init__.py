"""The agent side of corral: the `corral` CLI (cli.py, and containerizers.py for its other
containerizers) and the `corral agent` program (main.py: flags, resources, allocation,
checkpoint, recovery and the v1 operator API)."""
