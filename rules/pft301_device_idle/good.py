def train(model, dataset, optimizer):
    loader = DataLoader(dataset, batch_size=256, num_workers=8, pin_memory=True,
                        persistent_workers=True, prefetch_factor=4)
    for x, y in loader:  # the next batches are ready while the GPU computes
        x, y = x.cuda(non_blocking=True), y.cuda(non_blocking=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
