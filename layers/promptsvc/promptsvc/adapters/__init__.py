"""Adapters: the only code that talks to AWS. Each sits behind a small interface in domain.ports."""
