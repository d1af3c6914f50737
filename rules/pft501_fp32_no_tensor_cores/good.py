torch.set_float32_matmul_precision("high")  # TF32 tensor cores on Ampere and later
torch.backends.cudnn.allow_tf32 = True


def forward(model, x):
    with torch.autocast("cuda", dtype=torch.bfloat16):
        return model(x)
