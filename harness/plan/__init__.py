"""Capacity planner: predicts memory, time and cost of a cell before it runs, without torch.

    python -m harness.plan model=llama quant=4bit lora.r=16 train.batch_size=4 train.max_seq_len=2048

Modules: ``params`` (exact parameter counts), ``flops`` (model FLOPs per token),
``setting`` (a cell's shape, the coefficients and constants, the resolved ``Setting``), ``terms`` (each memory
term alone), ``memory`` (the peak-memory prediction and its breakdown), ``dist`` (the same per GPU of a
multi-GPU cell, and its communication), ``calibrate`` (fit free coefficients to
measured records), ``estimate`` (GPU table, time and cost), ``anchors`` (published figures), ``html`` (the
capacity view), ``suggest`` (the nearest configurations that fit when a cell does not), ``lengths`` (the data's token
lengths under the cell's tokenizer, measured in a child process), ``render`` (the printed output), ``__main__`` (the
command line). Imports config and store only: the parent's frontier and the
worker's efficiency both use it, so it never imports torch.
"""
