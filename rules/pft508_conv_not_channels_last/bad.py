model = Net()


def train_step(x, y, optimizer):
    loss = F.cross_entropy(model(x), y)  # NCHW convolutions
    loss.backward()
    optimizer.step()
