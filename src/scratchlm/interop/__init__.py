"""Our checkpoints and the rest of the field: Hugging Face export/import (gpt2, Llama, Qwen3) and the
lm-evaluation-harness adapter."""
