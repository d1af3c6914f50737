schedule = torch.profiler.schedule(wait=1, warmup=2, active=5)  # or: perftune profile --active 5
with torch.profiler.profile(schedule=schedule) as prof:
    for batch in loader:
        train_step(batch)
        prof.step()
