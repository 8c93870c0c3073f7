# serve.py in a container: CPU-only torch, python:3.11-slim, a non-root user. From the repository root:
#
#   docker build -t image-classifier-serve .
#   # online: the registry's production model; the key comes from the environment, never the image
#   docker run -p 8000:8000 -e WANDB_API_KEY -e WANDB_ENTITY -e WANDB_PROJECT image-classifier-serve
#   # offline: an artifact store made by the scripts, mounted
#   docker run -p 8000:8000 -e WANDB_MODE=offline -v "$PWD/artifact-store:/home/serve/artifact-store" \
#       image-classifier-serve --dataset digits
#
# Arguments after the image name go to serve.py (--model REF, --api-key-env NAME, --log-samples N, ...).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --create-home --uid 10001 serve

WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
# torch's CPU wheels first (the default ones carry CUDA: gigabytes a server without a GPU never uses)
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch torchvision \
    && pip install . \
    && rm -rf /root/.cache

USER serve
WORKDIR /home/serve
EXPOSE 8000
ENTRYPOINT ["python", "/src/app/pipelines/serve.py", "--host", "0.0.0.0", "--port", "8000"]
