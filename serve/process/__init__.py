"""Processes: nginx in front of one gunicorn per model worker, started and watched."""
