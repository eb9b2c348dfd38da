"""The `corral agent` program: main.py (flags, the launch server first, recovery, serving),
core.py (launch, wait, kill and remove, with allocation and checkpoints), api.py and its
neighbours (the v1 operator API), tasks.py and master.py (a Mesos master's frameworks and their
tasks). The `corral` command is corral/cli/."""
