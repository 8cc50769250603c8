"""`make bench`: the seed style (Keras VGG16 on one big float32 array) against this project
(extract once into a cache, then LR, RF and MLP on it), side by side on the same real images.

Reads ../shared/data/cifar10-subset (or --data-dir); writes reports/bench/bench.json and
reports/bench/bench.md, and prints the table. Every heavy step runs in a fresh subprocess
(`python -m bench.jobs`) so its peak resident memory is its own.

    python -m bench --sizes 32,64
"""
