with torch.profiler.profile() as prof:  # no schedule, no prof.step(): no step markers
    for batch in loader:
        train_step(batch)
prof.export_chrome_trace("trace.json")
