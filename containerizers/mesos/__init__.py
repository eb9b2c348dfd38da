"""The Mesos containerizer: corral's native one (launcher, supervisor, isolators)."""
