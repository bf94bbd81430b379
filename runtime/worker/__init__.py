"""``pseudoword worker``: a Runware-compatible inference service (REST ``POST /v1`` and WebSocket
``/v1``) on pipelines that stay loaded, resolving embeddings per request through the runtime's
``Resolver`` and batching compatible requests with different embeddings into one denoise.

Needs the ``[worker]`` extra (Litestar, uvicorn, prometheus-client on top of ``[runtime]``); it
never imports the registry service or SQLModel. Modules: ``settings`` (environment), ``models``
(models.toml and the loaded pipelines), ``protocol`` (task arrays and Runware's error shape),
``batcher`` (queues and denoising batches), ``inference`` (imageInference), ``search``
(modelSearch), ``images`` (URL outputs kept for a TTL), ``metrics``, ``logs``, ``app`` (routes).
"""
