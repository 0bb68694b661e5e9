#!/usr/bin/env python3
"""Checks that an adapter written by arp-train loads with PEFT and means what arp-train means.

Builds torch modules with GLM-4-Voice's module names (only the linear layers LoRA can wrap,
with the shapes of the given base model's config.json), loads the base weights from the
model's shards, applies the adapter with `peft.PeftModel.from_pretrained`, merges it with
`merge_and_unload()`, and compares every merged weight with a merged export written by
arp-train (`save_merged`).

Usage: python tools/peft_check.py BASE_MODEL_DIR ADAPTER_DIR MERGED_EXPORT_DIR
       (pip install torch peft safetensors)
"""
import json
import os
import sys

import torch
from peft import LoraConfig, PeftModel
from safetensors.torch import load_file


def shard_tensors(directory):
    with open(os.path.join(directory, "model.safetensors.index.json")) as f:
        files = sorted(set(json.load(f)["weight_map"].values()))
    out = {}
    for file in files:
        out.update(load_file(os.path.join(directory, file)))
    return out


class Layer(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        h, f = c["hidden_size"], c["ffn_hidden_size"]
        qkv = (c["num_attention_heads"] + 2 * c["multi_query_group_num"]) * c["kv_channels"]
        self.self_attention = torch.nn.Module()
        self.self_attention.query_key_value = torch.nn.Linear(h, qkv, bias=True)
        self.self_attention.dense = torch.nn.Linear(c["num_attention_heads"] * c["kv_channels"], h, bias=False)
        self.mlp = torch.nn.Module()
        self.mlp.dense_h_to_4h = torch.nn.Linear(h, 2 * f, bias=False)
        self.mlp.dense_4h_to_h = torch.nn.Linear(f, h, bias=False)


class Glm(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.transformer = torch.nn.Module()
        self.transformer.encoder = torch.nn.Module()
        self.transformer.encoder.layers = torch.nn.ModuleList([Layer(c) for _ in range(c["num_layers"])])


def main(base_dir, adapter_dir, merged_dir):
    with open(os.path.join(base_dir, "config.json")) as f:
        c = json.load(f)
    model = Glm(c)
    base = shard_tensors(base_dir)
    state = {k: v for k, v in base.items() if k in model.state_dict()}
    model.load_state_dict(state, strict=True)
    config = LoraConfig.from_pretrained(adapter_dir)
    config.task_type = None  # the stand-in model is a plain torch module, not a HF causal LM
    peft_model = PeftModel.from_pretrained(model, adapter_dir, config=config)
    merged_model = peft_model.merge_and_unload()
    exported = shard_tensors(merged_dir)
    worst = 0.0
    for name, value in merged_model.state_dict().items():
        worst = max(worst, (value.float() - exported[name].float()).abs().max().item())
    print(f"PEFT loaded {adapter_dir}; merge_and_unload vs arp-train's merged export: max abs difference {worst:.3e} "
          f"over {len(merged_model.state_dict())} tensors")


if __name__ == "__main__":
    main(*sys.argv[1:4])
