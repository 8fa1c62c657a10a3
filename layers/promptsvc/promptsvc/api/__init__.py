"""The HTTP API: a FastAPI app, served by Mangum in Lambda and by uvicorn in `promptsvc dev`."""
