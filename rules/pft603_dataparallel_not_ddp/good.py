# torchrun --nproc_per_node=NUM_GPUS train.py
def train(model, dataset, optimizer):
    dist.init_process_group("nccl")
    local_rank = int(os.environ["LOCAL_RANK"])
    torch.cuda.set_device(local_rank)
    model = DDP(model.cuda(local_rank), device_ids=[local_rank])
    loader = DataLoader(dataset, batch_size=64, sampler=DistributedSampler(dataset))
    for x, y in loader:
        loss = F.cross_entropy(model(x.cuda(local_rank)), y.cuda(local_rank))
        loss.backward()
        optimizer.step()
