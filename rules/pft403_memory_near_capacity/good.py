def train_step(model, tokens, optimizer):
    with torch.autocast("cuda", dtype=torch.bfloat16):
        h = model.embed(tokens)
        for block in model.blocks:
            h = checkpoint(block, h, use_reentrant=False)  # recompute instead of storing
        logits = model.head(h)
    loss = F.cross_entropy(logits.flatten(0, 1).float(), tokens.flatten())
    loss.backward()
    optimizer.step()
