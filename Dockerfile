# V2P on a CUDA machine. Build: docker build -t v2p .
# Train:       docker run --gpus all -p 6006:6006 v2p
# TensorBoard: docker run --gpus all -p 6006:6006 v2p tensorboard --logdir logs --bind_all
FROM pytorch/pytorch:2.6.0-cuda12.4-cudnn9-runtime

WORKDIR /workspace/v2p
COPY requirements.txt .
# PyPI's Linux wheels of the pinned torch/torchvision bundle their own CUDA libraries, so the
# pins hold here too and replace the base image's build.
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN pip install --no-cache-dir --no-deps -e .

EXPOSE 6006
CMD ["python", "cli.py", "fit", "--config", "configs/dishwashing_state.yaml", "--trainer.accelerator=gpu"]
