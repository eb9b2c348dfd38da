"""GPU isolators: gpu/nvidia (Mesos's), on NVIDIA's NVML (nvidia.py, nvml.py)."""
