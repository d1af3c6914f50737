def evaluate_step(model, batch, preds):
    logits = model(batch)
    preds.extend(logits.argmax(1).cpu().tolist())  # device→host copy every step
