"""The local development network: real daemons on loopback, started and stopped by camswarm."""
