"""corral's shared base: the vocabulary every package speaks, atomic files and Linux syscalls.

containerizers, isolators, provisioner and agent may all import this package; it imports
none of them and nothing heavy, so it stays cheap on the launch path.
"""

__version__ = "0.1.0"
