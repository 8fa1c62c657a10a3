"""Pure domain rules: no boto3, no I/O. Everything here is unit-testable as plain Python."""
