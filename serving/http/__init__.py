"""The HTTP edge: the Flask app factory, its routes, keys, bodies, errors, metrics and gunicorn settings."""
