"""`deepfake-detect api`: the HTTP API (FastAPI, served by uvicorn).

    deepfake-detect api --port 8000 --workers 2
    curl -F file=@clip.mp4 'http://127.0.0.1:8000/v1/analyses?wait=true'

The app is in app.py, the job queue and workers in service.py; the command line in cli/api.py
(which imports neither FastAPI nor torch until the command runs).
"""

DEFAULT_HOST = "127.0.0.1"  # this machine only; --host 0.0.0.0 serves the network (the Docker image does)
DEFAULT_PORT = 8000
DEFAULT_MAX_UPLOAD_MB = 500
KEYS_ENV = "DEEPFAKE_API_KEYS"  # comma-separated API keys (also --api-keys-file)
NEEDS = ("fastapi", "uvicorn", "python_multipart", "prometheus_client")
