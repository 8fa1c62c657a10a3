"""The local stack (`promptsvc dev`, tests): moto as AWS, and emulators of what Lambda's
event sources do, feeding the same handlers real-shaped events."""
