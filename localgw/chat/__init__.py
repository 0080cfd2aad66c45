"""Chat layer: templates, stop handling, output parsing. Pure functions, no llama_cpp."""
