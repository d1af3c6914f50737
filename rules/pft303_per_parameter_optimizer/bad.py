def train_step(model, batch, optimizer):
    loss = model(batch).mean()
    loss.backward()
    optimizer.step()  # Adam(..., foreach=False): six small ops per parameter


optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=False)
