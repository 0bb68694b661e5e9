#!/usr/bin/env python3
"""A tiny GLM-4-Voice-9B-shaped checkpoint and its expected outputs, in numpy.

An independent implementation of the ChatGLM forward pass written from
../shared/reference/glm-4-voice.md section 1: RMSNorm (fp32), fused query_key_value with bias,
grouped KV heads, GLM RoPE on the first half of each head with interleaved pairs, SwiGLU from
the fused dense_h_to_4h, untied output layer, causal attention, shifted cross entropy with
ignore index -100; LoRA as y = x W^T + (alpha / r) (x A^T) B^T.

Writes tests/fixtures/glm4/:
  model/    config.json (real key names + extras), model-0000{1,2}-of-00002.safetensors,
            model.safetensors.index.json  (the Hugging Face sharded layout)
  adapter/  adapter_model.safetensors + adapter_config.json (PEFT's names; B non-zero)
  expected.safetensors
    input_ids [2, 12] int32, labels [2, 12] int32 (-100 on the prompt part),
    logits [2, 12, vocab], loss [1]                       base model
    lora_logits [2, 12, vocab], lora_loss [1]             with the adapter
    greedy_prompt [5] int32, greedy [8] int32, lora_greedy [8] int32   8 new tokens, greedy

Also:
  --tiny-recipe-model   random bf16 weights for models/tiny/glm-4-voice-9b (the tiny recipe's base
                        model; its config.json and tokenizer files are already there)
  --check-merged DIR    load a merged export written by arp-train (shards + index, any dtype)
                        and compare its logits with the expected LoRA logits

Usage: python tools/glm4_reference.py [--tiny-recipe-model | --check-merged DIR]   (numpy, safetensors)
"""
import json
import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "glm4")

CONFIG = {
    "_comment": "Tiny ChatGLM config for parity tests (tools/glm4_reference.py); real key names.",
    "_name_or_path": "tiny-glm-4-voice",
    "model_type": "chatglm",
    "architectures": ["ChatGLMForConditionalGeneration"],
    "auto_map": {"AutoConfig": "configuration_chatglm.ChatGLMConfig",
                 "AutoModelForCausalLM": "modeling_chatglm.ChatGLMForConditionalGeneration"},
    "add_bias_linear": False, "add_qkv_bias": True, "apply_query_key_layer_scaling": True,
    "apply_residual_connection_post_layernorm": False, "attention_dropout": 0.0,
    "attention_softmax_in_fp32": True, "bias_dropout_fusion": True, "eos_token_id": [3, 4],
    "ffn_hidden_size": 96, "fp32_residual_connection": False, "hidden_dropout": 0.0,
    "hidden_size": 64, "kv_channels": 16, "layernorm_epsilon": 1.5625e-07,
    "multi_query_attention": True, "multi_query_group_num": 2, "num_attention_heads": 4,
    "num_layers": 2, "original_rope": True, "pad_token_id": 0, "padded_vocab_size": 600,
    "post_layer_norm": True, "rmsnorm": True, "rope_ratio": 1, "seq_length": 128,
    "torch_dtype": "float32", "use_cache": True, "vocab_size": 600,
}
TARGETS = ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"]
RANK, ALPHA = 4, 8.0


def shapes(c):
    h, v, f = c["hidden_size"], c["padded_vocab_size"], c["ffn_hidden_size"]
    qkv = (c["num_attention_heads"] + 2 * c["multi_query_group_num"]) * c["kv_channels"]
    out = {"transformer.embedding.word_embeddings.weight": (v, h)}
    for n in range(c["num_layers"]):
        p = f"transformer.encoder.layers.{n}."
        out[p + "input_layernorm.weight"] = (h,)
        out[p + "self_attention.query_key_value.weight"] = (qkv, h)
        out[p + "self_attention.query_key_value.bias"] = (qkv,)
        out[p + "self_attention.dense.weight"] = (h, c["num_attention_heads"] * c["kv_channels"])
        out[p + "post_attention_layernorm.weight"] = (h,)
        out[p + "mlp.dense_h_to_4h.weight"] = (2 * f, h)
        out[p + "mlp.dense_4h_to_h.weight"] = (h, f)
    out["transformer.encoder.final_layernorm.weight"] = (h,)
    out["transformer.output_layer.weight"] = (v, h)
    return out


def rms(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def rope(x, positions, rope_ratio):
    """x [T, heads, hd]: rotate the first hd/2 dims in interleaved pairs."""
    hd = x.shape[-1]
    rot = hd // 2
    theta = 1.0 / (10000.0 * rope_ratio) ** (np.arange(0, rot, 2) / rot)  # [rot/2]
    ang = positions[:, None] * theta[None, :]  # [T, rot/2]
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    xr = x[..., :rot].reshape(x.shape[0], x.shape[1], rot // 2, 2)
    x0, x1 = xr[..., 0], xr[..., 1]
    out = np.stack([x0 * cos - x1 * sin, x1 * cos + x0 * sin], axis=-1).reshape(x.shape[0], x.shape[1], rot)
    return np.concatenate([out, x[..., rot:]], axis=-1)


def linear(x, w, name, lora):
    y = x @ w.T
    if lora is not None and name in lora:
        a, b = lora[name]
        y = y + (ALPHA / RANK) * (x @ a.T) @ b.T
    return y


def forward(ids, p, c, lora=None):
    """ids [T] -> logits [T, vocab] (one sequence; the batch is a loop)."""
    heads, groups, hd = c["num_attention_heads"], c["multi_query_group_num"], c["kv_channels"]
    eps = c["layernorm_epsilon"]
    h = p["transformer.embedding.word_embeddings.weight"][ids]
    t = len(ids)
    pos = np.arange(t, dtype=np.float64)
    causal = np.tril(np.ones((t, t), dtype=bool))
    for n in range(c["num_layers"]):
        pre = f"transformer.encoder.layers.{n}."
        x = rms(h, p[pre + "input_layernorm.weight"], eps)
        qkv = linear(x, p[pre + "self_attention.query_key_value.weight"], pre + "self_attention.query_key_value", lora)
        qkv = qkv + p[pre + "self_attention.query_key_value.bias"]
        q = qkv[:, :heads * hd].reshape(t, heads, hd)
        k = qkv[:, heads * hd:(heads + groups) * hd].reshape(t, groups, hd)
        v = qkv[:, (heads + groups) * hd:].reshape(t, groups, hd)
        q, k = rope(q, pos, c["rope_ratio"]), rope(k, pos, c["rope_ratio"])
        ctx = np.empty((t, heads, hd))
        for head in range(heads):
            g = head // (heads // groups)
            s = q[:, head] @ k[:, g].T / np.sqrt(hd)
            s = np.where(causal, s, -np.inf)
            s = np.exp(s - s.max(1, keepdims=True))
            s /= s.sum(1, keepdims=True)
            ctx[:, head] = s @ v[:, g]
        h = h + linear(ctx.reshape(t, heads * hd), p[pre + "self_attention.dense.weight"], pre + "self_attention.dense", lora)
        x = rms(h, p[pre + "post_attention_layernorm.weight"], eps)
        up = linear(x, p[pre + "mlp.dense_h_to_4h.weight"], pre + "mlp.dense_h_to_4h", lora)
        a, b = np.split(up, 2, axis=-1)
        act = a / (1.0 + np.exp(-a)) * b
        h = h + linear(act, p[pre + "mlp.dense_4h_to_h.weight"], pre + "mlp.dense_4h_to_h", lora)
    h = rms(h, p["transformer.encoder.final_layernorm.weight"], eps)
    return h @ p["transformer.output_layer.weight"].T


def loss(logits, labels):
    """Mean cross entropy of logits[:, :-1] against labels[:, 1:], ignoring -100."""
    total, count = 0.0, 0
    for lg, lb in zip(logits, labels):
        for i in range(len(lb) - 1):
            target = lb[i + 1]
            if target == -100:
                continue
            z = lg[i] - lg[i].max()
            total += -(z[target] - np.log(np.exp(z).sum()))
            count += 1
    return total / count


def greedy(prompt, steps, p, c, lora=None):
    ids = list(prompt)
    for _ in range(steps):
        ids.append(int(forward(np.array(ids), p, c, lora)[-1].argmax()))
    return ids[len(prompt):]


def main():
    from safetensors.numpy import save_file
    rng = np.random.default_rng(4096)
    c = CONFIG
    p = {}
    for name, shape in shapes(c).items():
        if name.endswith("layernorm.weight"):
            p[name] = 1.0 + rng.normal(0.0, 0.1, shape)
        elif name.endswith("bias"):
            p[name] = rng.normal(0.0, 0.1, shape)
        else:
            p[name] = rng.normal(0.0, 1.0 / np.sqrt(shape[-1]), shape)
    p = {k: v.astype(np.float32).astype(np.float64) for k, v in p.items()}

    model_dir = os.path.join(OUT, "model")
    os.makedirs(model_dir, exist_ok=True)
    names = list(shapes(c))
    split = names.index("transformer.encoder.layers.1.input_layernorm.weight")
    shards = {"model-00001-of-00002.safetensors": names[:split], "model-00002-of-00002.safetensors": names[split:]}
    weight_map = {}
    for file, keys in shards.items():
        tensors = {k: p[k].astype(np.float32) for k in keys}
        if file.startswith("model-00001"):
            # Present in some real checkpoints; loaders must ignore it.
            tensors["transformer.rotary_pos_emb.inv_freq"] = np.zeros(4, dtype=np.float32)
        save_file(tensors, os.path.join(model_dir, file), metadata={"format": "pt"})
        weight_map.update({k: file for k in tensors})
    total = sum(v.size * 4 for v in p.values()) + 16
    with open(os.path.join(model_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)
    with open(os.path.join(model_dir, "config.json"), "w") as f:
        json.dump(c, f, indent=2)

    lora = {}
    for n in range(c["num_layers"]):
        for target in TARGETS:
            module = "self_attention" if target in ("query_key_value", "dense") else "mlp"
            name = f"transformer.encoder.layers.{n}.{module}.{target}"
            out_f, in_f = p[name + ".weight"].shape
            a = rng.normal(0.0, 1.0 / np.sqrt(in_f), (RANK, in_f))
            b = rng.normal(0.0, 0.05, (out_f, RANK))
            lora[name] = (a.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64))
    adapter_dir = os.path.join(OUT, "adapter")
    os.makedirs(adapter_dir, exist_ok=True)
    adapter = {}
    for name, (a, b) in lora.items():
        adapter[f"base_model.model.{name}.lora_A.weight"] = a.astype(np.float32)
        adapter[f"base_model.model.{name}.lora_B.weight"] = b.astype(np.float32)
    save_file(adapter, os.path.join(adapter_dir, "adapter_model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(adapter_dir, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": RANK, "lora_alpha": ALPHA,
                   "lora_dropout": 0.0, "target_modules": TARGETS, "bias": "none", "fan_in_fan_out": False,
                   "inference_mode": True, "base_model_name_or_path": "tiny-glm-4-voice"}, f, indent=2)

    ids = rng.integers(5, c["padded_vocab_size"], (2, 12))
    labels = ids.copy()
    labels[0, :5] = -100
    labels[1, :7] = -100
    logits = np.stack([forward(x, p, c) for x in ids])
    lora_logits = np.stack([forward(x, p, c, lora) for x in ids])
    prompt = ids[0, :5]
    expected = {
        "input_ids": ids.astype(np.int32), "labels": labels.astype(np.int32),
        "logits": logits.astype(np.float32), "loss": np.array([loss(logits, labels)], dtype=np.float64),
        "lora_logits": lora_logits.astype(np.float32),
        "lora_loss": np.array([loss(lora_logits, labels)], dtype=np.float64),
        "greedy_prompt": prompt.astype(np.int32),
        "greedy": np.array(greedy(prompt, 8, p, c), dtype=np.int32),
        "lora_greedy": np.array(greedy(prompt, 8, p, c, lora), dtype=np.int32),
    }
    save_file(expected, os.path.join(OUT, "expected.safetensors"))
    print("loss", expected["loss"][0], "lora_loss", expected["lora_loss"][0],
          "greedy", expected["greedy"].tolist(), "lora_greedy", expected["lora_greedy"].tolist())


def tiny_recipe_model():
    """bf16 weights (as the real checkpoint stores them) for the tiny recipe's config."""
    from safetensors.numpy import save_file
    model_dir = os.path.join(ROOT, "models", "tiny", "glm-4-voice-9b")
    with open(os.path.join(model_dir, "config.json")) as f:
        c = json.load(f)
    rng = np.random.default_rng(12)
    tensors = {}
    for name, shape in shapes(c).items():
        if name.endswith("layernorm.weight"):
            v = np.ones(shape)
        elif name.endswith("bias"):
            v = np.zeros(shape)
        else:
            # 1/sqrt(fan_in): logits of order one, so a LoRA on the layers below can move them
            # (with the usual 0.02 the frozen output layer keeps every logit near zero).
            v = rng.normal(0.0, 1.0 / np.sqrt(shape[-1]), shape)
        # bf16 by truncating float32 to its upper 16 bits after round-to-nearest-even.
        bits = v.astype(np.float32).view(np.uint32)
        bits = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
        tensors[name] = bits
    # safetensors.numpy has no bfloat16: write the header by hand.
    header, offset, blobs = {"__metadata__": {"format": "pt"}}, 0, []
    for name in shapes(c):
        data = tensors[name].tobytes()
        header[name] = {"dtype": "BF16", "shape": list(shapes(c)[name]), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    with open(os.path.join(model_dir, "model.safetensors"), "wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw + b"".join(blobs))
    print(f"wrote {len(tensors)} bf16 tensors to {model_dir}/model.safetensors")


def check_merged(directory):
    from safetensors.numpy import load_file
    with open(os.path.join(directory, "model.safetensors.index.json")) as f:
        files = sorted(set(json.load(f)["weight_map"].values()))
    p = {}
    for file in files:
        for name, value in load_file(os.path.join(directory, file)).items():
            p[name] = value.astype(np.float64)
    with open(os.path.join(directory, "config.json")) as f:
        c = json.load(f)
    expected = load_file(os.path.join(OUT, "expected.safetensors"))
    logits = np.stack([forward(x, p, c) for x in expected["input_ids"]])
    want = expected["lora_logits"].astype(np.float64)
    err = np.abs(logits - want).max() / np.abs(want).max()
    print(f"merged export {directory}: logits relative error vs the LoRA reference {err:.3e}")


if __name__ == "__main__":
    import sys
    if "--tiny-recipe-model" in sys.argv:
        tiny_recipe_model()
    elif "--check-merged" in sys.argv:
        check_merged(sys.argv[sys.argv.index("--check-merged") + 1])
    else:
        main()
