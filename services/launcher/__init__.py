"""The `stellaclaw` command: the one package that knows all five services."""
