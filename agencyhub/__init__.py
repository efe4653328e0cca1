"""The service shell: settings, the ASGI app and the command line."""
