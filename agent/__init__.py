"""The agent side of corral: the CLI today; the `corral agent` loop, resources and the operator API next."""
