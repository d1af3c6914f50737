schedule = torch.profiler.schedule(wait=1, warmup=1, active=1)  # one step to judge from
with torch.profiler.profile(schedule=schedule) as prof:
    for batch in loader:
        train_step(batch)
        prof.step()
