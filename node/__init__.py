"""What every camswarm role shares: config, daemon clients, devnet, CLI."""
