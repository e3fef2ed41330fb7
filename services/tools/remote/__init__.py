"""The SSH runner (SPEC §6.6): pooled connections to a remote and the commands run on it."""
