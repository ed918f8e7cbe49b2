"""Developer tooling: the embedded PostgreSQL and a local mirror of the Exnaton source."""
