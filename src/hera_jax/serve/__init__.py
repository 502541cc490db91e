"""The trained router in front of real agents: the `Router` Python API and `hera-serve`, an OpenAI-compatible
step-routing proxy (serve/app.py) whose decision log is a dataset stage 2 reads (serve/log.py)."""
