"""What runs on a developer's machine, never in Lambda: the local stack (`promptsvc dev`: moto as
AWS, and emulators of what Lambda's event sources and API Gateway do, feeding the same handlers
real-shaped events), its chaos profile, and the `promptsvc` CLI. `promptsvc dev`, `worker` and
`keys` need the `local` extra; the client commands (`prompt`, `prompts`, `thread`, `models`,
`registry`) only `client` (docs/client.md). The Lambda layer (layers/promptsvc) does not ship it."""
