model = DDP(model, device_ids=[local_rank], bucket_cap_mb=25, gradient_as_bucket_view=True)


def train_step(model, batch, optimizer):
    loss = model(batch).mean()
    loss.backward()  # buckets are all-reduced while backward continues
    optimizer.step()
