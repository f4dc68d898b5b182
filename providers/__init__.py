"""The bank side: the provider base class, hosting, and the synthetic bank simulator."""
