"""Use cases: orchestrate the domain rules over the ports. No boto3 here either."""
