"""Generated sample data for the demo and the tests — never used by the product itself.

- ``synth``: short synthetic songs in a few styles (real audio, rendered with numpy);
- ``sample_library``: a small library of such songs on disk plus its Navidrome-schema database;
- ``navidrome_fixture``: writes and mutates that database (add, touch, delete, mark missing tracks).

``lib/`` never imports this package (``tests/test_layers.py`` enforces it).
"""
