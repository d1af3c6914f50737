def train(model, dataset, optimizer):
    loader = DataLoader(dataset, batch_size=256)  # batches built on the training thread
    for x, y in loader:  # the GPU idles while each batch is decoded
        loss = F.cross_entropy(model(x.cuda()), y.cuda())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
