"""The session service: SessionActors that run turns against the model and the tools."""
