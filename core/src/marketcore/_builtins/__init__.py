"""The built-in plugins: ordinary plugin modules listed in ``DEFAULT_PLUGINS``."""
