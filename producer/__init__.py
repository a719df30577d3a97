"""camswarm producer role (built in a later issue)."""
