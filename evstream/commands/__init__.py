"""One module per ``python main.py`` command; each has ``add_arguments(parser)`` and ``run(args)``."""
