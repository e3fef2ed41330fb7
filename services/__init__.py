"""Stellaclaw's five services and the launcher that runs them."""
