"""How the tools service launches a command in each sandbox mode (SPEC §6.1-§6.5)."""
