"""The test kit: real NATS, wire-protocol fakes of Telegram and the LLM APIs, waiting helpers."""
