"""What runs on a developer's machine, never in Lambda: the local stack (`promptsvc dev`: moto as
AWS, and emulators of what Lambda's event sources and API Gateway do, feeding the same handlers
real-shaped events), its chaos profile, and the `promptsvc` CLI. Installed with the `local` extra;
the Lambda layer (layers/promptsvc) does not ship it."""
