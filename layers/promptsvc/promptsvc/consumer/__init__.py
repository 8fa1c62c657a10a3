"""The inference consumer core, shared by the Lambda consumer and the ECS GPU worker."""
