"""The ``taskbalance`` command line: one module per command group, each exposing ``register(app)``.

May import every package (it sits on top); nothing imports it. Commands import their libraries on use, so
``taskbalance --help`` stays fast.
"""
