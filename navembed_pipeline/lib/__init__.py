"""Plain-Python core (never imports dagster), usable by the pipeline and the API alike: one package per domain
(``library``, ``models``, ``store``, ``duplicates``, ``engine``, ``recommend``; each ``__init__`` says what it owns
and may import), the contracts (``runs``, ``progress``, ``workers``, ``settings``) and the shared leaves."""
