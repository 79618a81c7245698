#!/bin/bash
# The LLMSeR lanes under their older name (notes of earlier sessions give
# `llmser_lanes.sh DATASET HH:MM [flags]`): `llm_lanes.sh llmser DATASET HH:MM [flags]`.
exec bash "$(dirname "$0")/llm_lanes.sh" llmser "$@"
