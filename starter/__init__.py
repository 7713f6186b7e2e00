"""The HTTP API, the CLI and the embedded development stack."""
