"""camswarm mirror role (built in a later issue)."""
