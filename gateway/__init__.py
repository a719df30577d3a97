"""camswarm gateway role (built in a later issue)."""
