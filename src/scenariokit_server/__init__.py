"""The embedded target: a vLLM-compatible OpenAI API server running small recognition models on the CPU."""
