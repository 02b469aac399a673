"""Train a federation: ``python train.py experiment=fedmed_fedavg`` (Hydra).

The app is :func:`fedmllm.train.main` (also ``python -m fedmllm.train ...``) over the configs
shipped in the package (``src/fedmllm/configs``); add your own config directories with
``hydra.searchpath=[file:///path/to/configs]``.
"""

from fedmllm.train import main

if __name__ == "__main__":
    main()
