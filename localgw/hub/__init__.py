"""Hub: resolving refs to GGUF files on the Hugging Face Hub, downloading, removing."""
