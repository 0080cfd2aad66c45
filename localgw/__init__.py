"""localgw: a local, OpenAI-compatible inference server on llama.cpp."""

__version__ = "0.1.0"
