"""The Telegram ingress: long-polls the Bot API and publishes accepted messages to SC_IN."""
