"""`colorjax serve`: a browser demo on Starlette + uvicorn (app, model pool, worker, page)."""
