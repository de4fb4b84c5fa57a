"""Capacity planner: predicts memory, time and cost of a cell before it runs, without torch.

    python -m harness.plan model=llama quant=4bit lora.r=16 train.batch_size=4 train.max_seq_len=2048

Modules: ``params`` (exact parameter counts), ``flops`` (model FLOPs per token),
``memory`` (peak-memory breakdown), ``calibrate`` (fit free coefficients to measured
records), ``estimate`` (GPU table, time and cost), ``__main__`` (the command line).
"""
