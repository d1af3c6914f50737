def train_step(model, images, labels, optimizer):
    loss = F.cross_entropy(model(images), labels)  # fixed 224×224 crops, heuristic conv algorithms
    loss.backward()
    optimizer.step()
