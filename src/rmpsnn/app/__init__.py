"""The application layer: what the ``rmpsnn`` command runs on top of the library -- the
quickstart, the conversion experiment (ANN accuracy, conversions, accuracy over T, figures) and
the run reports.  It imports the library packages (``conversion``, ``training``, ``analysis``,
``export``, ``data``); none of them imports it, and none of ``conversion``, ``analysis`` and
``export`` imports ``training``."""
