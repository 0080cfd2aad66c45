"""Engine: the only package that touches llama.cpp. One owner thread per llama context."""
