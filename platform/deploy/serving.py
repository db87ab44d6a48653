"""How to serve a registered model locally (the server itself is `llamaops serve`)."""

PRODUCTION_ALIAS = "production"


def serve_command(model_name: str, alias: str = PRODUCTION_ALIAS, host: str = "127.0.0.1", port: int = 8000) -> str:
    return f"llamaops serve models:/{model_name}@{alias} --host {host} --port {port}"
