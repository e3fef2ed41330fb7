"""The contract between Stellaclaw's services: bus messages, names, config, and bus plumbing."""
