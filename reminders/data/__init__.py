"""The data layer: tables, engines and sessions, service errors, and the few services the
engine shares with the web (raising an alert, proposing prophylaxis courses, pruning).

It imports the pure core and nothing above it: no engine module, no ``backend``, no Flask.
"""
