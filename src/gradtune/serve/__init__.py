"""`gradtune serve RUN`: a trained run over HTTP (FastAPI + uvicorn; `pip install 'gradtune[serve]'`).

    app.py              the routes: /health, /metadata, /predict, the docs; wires the rest together
    served_model.py     the Predictor, loaded once, behind the batcher: predict, generate, stream
    batching.py         requests that arrive together answered by one model call, in one model thread
    hf_protocol.py      the Hugging Face Inference API payloads at POST / (Task.hf_task picks one)
    openai_protocol.py  OpenAI's /v1/chat/completions, /v1/completions, /v1/models (runs that write text)
    limits.py           what one request may ask, and the JSON errors
    guards.py           the API key, the body size and well-formed JSON, before any route

Nothing here is imported by the rest of gradtune: fastapi and uvicorn stay optional."""
