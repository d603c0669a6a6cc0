"""The analyst surface: read-only SQL over the warehouse Delta tables (Spark or DuckDB), named
queries, and audience exports for ad targeting. See docs/analyst.md."""
