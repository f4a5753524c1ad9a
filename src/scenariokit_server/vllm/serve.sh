#!/usr/bin/env bash
# Serve a small vision-language model with vLLM's OpenAI-compatible server on loopback (needs a GPU).
set -euo pipefail
MODEL="${MODEL:-Qwen/Qwen2.5-VL-3B-Instruct}"
exec vllm serve "$MODEL" --host 127.0.0.1 --port "${PORT:-8000}" \
  --max-model-len "${MAX_MODEL_LEN:-8192}" --limit-mm-per-prompt '{"image": 1}' \
  --gpu-memory-utilization "${GPU_MEMORY_UTILIZATION:-0.90}"
