"""The cgroups/* isolators. The cgroups themselves, v1 and v2, are corral.cgroups's."""
