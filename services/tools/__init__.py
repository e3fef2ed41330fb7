"""The tools service: runs the model's tool calls in a conversation's workspace (DESIGN §6)."""
