def train_step(model, tokens, optimizer):
    logits = model(tokens)  # every block's activations kept for backward, in fp32
    loss = F.cross_entropy(logits.flatten(0, 1), tokens.flatten())
    loss.backward()
    optimizer.step()
