def train(model, loader, optimizer):
    model = nn.DataParallel(model).cuda()
    for x, y in loader:
        loss = F.cross_entropy(model(x), y.cuda())  # replicate, scatter, gather every step
        loss.backward()
        optimizer.step()
