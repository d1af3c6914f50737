torch.backends.cudnn.benchmark = True  # static shapes: autotune each convolution once


def train_step(model, images, labels, optimizer):
    loss = F.cross_entropy(model(images), labels)
    loss.backward()
    optimizer.step()
