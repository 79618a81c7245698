# Sourced by the device scripts (grid.sh, llm_stage.sh): what every lent-GPU call sets up.

# The carried wheels into /tmp/site (SKIP_PIP=1: trying a script here, where they are installed).
install_wheels() {
  [ -n "${SKIP_PIP:-}" ] && return 0
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$@"
}

# CUDA MPS, so several processes share the GPU; off again if $1 (a python) cannot reach it.
start_mps() {
  if nvidia-cuda-mps-control -d 2>/dev/null; then
    if "$1" -c "import torch; torch.zeros(8, device='cuda').sum().item()"; then echo "MPS on"
    else echo quit | nvidia-cuda-mps-control; sleep 2; echo "MPS failed, off"; fi
  else echo "no MPS"; fi
}
