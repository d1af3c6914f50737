def train_step(model, batch, optimizer):
    loss = model(batch).mean()
    loss.backward()
    optimizer.step()  # one fused kernel for all parameters


optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)  # or foreach=True
