"""The LLM agents' adapters: the OpenAI-compatible chat client and the prompt templates."""
