model = Net().to(memory_format=torch.channels_last)


def train_step(x, y, optimizer):
    loss = F.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)), y)
    loss.backward()
    optimizer.step()
